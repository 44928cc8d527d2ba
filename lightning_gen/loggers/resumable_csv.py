"""A CSV logger that continues a run's ``metrics.csv`` on resume instead of deleting it.

Lightning's ``CSVLogger`` deletes ``metrics.csv`` when its folder is not empty, and buffers rows
for 100 steps (a kill -9 loses them). This one flushes every logged row (rows come every
``log_every_n_steps`` only, so this is cheap) and, when a run resumes from a checkpoint, keeps
exactly the rows logged up to that checkpoint (``step <= keep_until_step``): rows logged after it,
before the crash, are dropped because the resumed run logs those steps again.
"""
from __future__ import annotations

import csv
import os
import tempfile
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


def truncate_metrics_csv(path: str, keep_until_step: int) -> tuple[list[str], int]:
    """Rewrite ``path`` atomically with only rows whose ``step <= keep_until_step`` (and complete).

    Returns ``(header, rows_dropped)``. A row cut short by a crash (missing fields) is dropped.
    """
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    kept = []
    for row in rows:
        if None in row.values() or None in row:  # a line cut by a crash mid-write
            continue
        try:
            step = int(float(row.get("step") or "nan"))
        except ValueError:
            continue
        if step <= keep_until_step:
            kept.append(row)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".csv", dir=os.path.dirname(path) or ".")
    with os.fdopen(fd, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(kept)
    os.replace(tmp, path)
    return header, len(rows) - len(kept)


class _ResumableWriter(ExperimentWriter):
    def __init__(self, log_dir: str, keep_until_step: int | None) -> None:
        self.keep_until_step = keep_until_step
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        if self.keep_until_step is None:
            return super()._check_log_dir_exists()
        if os.path.isfile(self.metrics_file_path):
            header, _ = truncate_metrics_csv(self.metrics_file_path, self.keep_until_step)
            self.metrics_keys = sorted(k for k in header)

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        # Lightning rewrites in place; a kill mid-rewrite would lose the history: write + replace.
        with open(self.metrics_file_path, newline="") as f:
            rows = list(csv.DictReader(f))
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".csv", dir=self.log_dir)
        with os.fdopen(fd, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.metrics_file_path)


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` writing ``<save_dir>/metrics.csv`` that survives crashes and resumes.

    Args:
        save_dir: The run directory.
        keep_until_step: On resume, the logger step stored in the checkpoint; ``None`` for a new run.
        **kwargs: Passed to ``CSVLogger`` (``flush_logs_every_n_steps`` defaults to 1 here).
    """

    def __init__(self, save_dir: str, keep_until_step: int | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("flush_logs_every_n_steps", 1)
        super().__init__(save_dir=save_dir, name="", version="", **kwargs)
        self.keep_until_step = keep_until_step

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ResumableWriter(self.log_dir, self.keep_until_step)
        return self._experiment
