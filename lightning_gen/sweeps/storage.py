"""Where an Optuna sweep's study lives: a storage URL as the sweep, its trials and ``compare`` open it.

- ``sqlite:///path.db`` (the default, ``<root>/sweeps/<name>.db``): one machine.
- ``postgresql://user@host:port/db`` (or ``mysql://...``): many sweep processes on many machines. Plain
  ``postgresql://`` is opened with psycopg 3 (``pip install -e '.[sweep]'``) when psycopg2 is not installed.
- ``journal:PATH``: Optuna's journal file, for a cluster with a shared filesystem and no database.
  Optuna keeps no heartbeats in a journal, so a trial whose process was killed stays RUNNING there and is not
  retried by another worker: on such a cluster rerun it with the same command (it resumes its ``last.ckpt``).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

JOURNAL_PREFIX = "journal:"


def default_storage(root: str, name: str) -> str:
    """The SQLite study of sweep ``name`` under ``root``."""
    return f"sqlite:///{Path(root, 'sweeps', name + '.db').resolve()}"


def rdb_url(url: str) -> str:
    """``url`` with a driver SQLAlchemy can load: ``postgresql://`` -> ``postgresql+psycopg://`` without psycopg2."""
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg2") is None:
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def open_storage(url: str, heartbeat_s: int | None = None) -> Any:
    """The Optuna storage of ``url``; with ``heartbeat_s`` (databases only) a trial silent for two beats is
    failed and re-queued, up to 3 times."""
    if url.startswith(JOURNAL_PREFIX):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len(JOURNAL_PREFIX) :]).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    heartbeat = {}
    if heartbeat_s is not None:
        heartbeat = {
            "heartbeat_interval": heartbeat_s,
            "grace_period": 2 * heartbeat_s,
            "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=3),
        }
    return _create_tables_once(lambda: RDBStorage(rdb_url(url), **heartbeat))


def _create_tables_once(open_rdb: Callable[[], Any], attempts: int = 5) -> Any:
    """``open_rdb()``, again if another process created Optuna's tables in an empty database at the same moment
    (PostgreSQL: ``duplicate key ... pg_type_typname_nsp_index``; the loser's ``CREATE TABLE`` fails once)."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts - 1):
        try:
            return open_rdb()
        except (IntegrityError, ProgrammingError):
            time.sleep(0.2 * (attempt + 1))
    return open_rdb()
