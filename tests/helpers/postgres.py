"""A real PostgreSQL server for a test: its own data dir in /tmp, on 127.0.0.1 and a free port, stopped after.

Debian's ``postgresql`` package installs the binaries in ``/usr/lib/postgresql/<version>/bin`` and a ``postgres``
user; the server refuses to run as root, so as root it runs as that user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise RuntimeError(f"PostgreSQL's `{name}` is not installed: `apt-get install postgresql` (scripts/setup.sh).")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a PostgreSQL server; yield its URL (``postgresql://postgres@127.0.0.1:PORT/postgres``, no password)."""
    folder = Path(tempfile.mkdtemp(prefix="lg-postgres-"))
    data, log = folder / "data", folder / "server.log"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    port = _free_port()
    run = {"check": True, "capture_output": True, "text": True, "timeout": 120}
    try:
        subprocess.run(_as_server_user([_pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]), **run)
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off"
        start = [_pg_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start"]
        subprocess.run(_as_server_user(start), **run)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    except subprocess.CalledProcessError as err:
        server_log = log.read_text() if log.is_file() else ""
        raise RuntimeError(f"PostgreSQL did not start: {err.stderr}\n{server_log}") from err
    finally:
        if (data / "postmaster.pid").is_file():
            stop = [_pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
            subprocess.run(_as_server_user(stop), capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
