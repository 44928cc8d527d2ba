"""A CSV logger that continues a run's ``metrics.csv`` on resume instead of deleting it.

Lightning's ``CSVLogger`` deletes ``metrics.csv`` when its folder is not empty, and buffers rows
for 100 steps (a kill -9 loses them). This one flushes every logged row (rows come every
``log_every_n_steps`` only, so this is cheap) and, when a run resumes from a checkpoint, keeps
exactly the rows logged up to that checkpoint: rows logged after it, before the crash, are
dropped because the resumed run logs those steps again.

Two cuts, because the logger is built before the checkpoint is read: at construction, rows with
``step > keep_until_step`` (a safe upper bound, ``Resume.log_step``); then, when the checkpoint is
restored, :meth:`ResumableCSVLogger.restore_rows` keeps exactly the rows that were on disk when it
was saved, plus the row of the batch it was saved in (Lightning writes that row *after* the
``on_train_batch_end`` hooks that save step checkpoints; the checkpoint carries its values, so a
kill between the checkpoint rename and the row write loses nothing). Counting rows instead of
comparing steps makes the cut independent of where Lightning saved (batch end, validation end,
epoch end, where the logger step differs by one).
"""

from __future__ import annotations

import csv
import os
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from gen_common.atomic import atomic_write
from lightning_gen.runs.metrics_csv import read_complete_rows, row_step


def _rewrite(path: str, header: list[str], rows: list[dict[str, str]]) -> None:
    """Replace ``path`` atomically (a kill mid-write leaves the previous file)."""
    with atomic_write(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def truncate_metrics_csv(path: str, keep_until_step: int) -> tuple[list[str], int]:
    """Rewrite ``path`` atomically with only rows whose ``step <= keep_until_step`` (and complete).

    Returns ``(header, rows_dropped)``. A row cut short by a crash is dropped.
    """
    header, rows, cut = read_complete_rows(path)
    kept = [row for row in rows if (row_step(row) or 0) <= keep_until_step]
    _rewrite(path, header, kept)
    return header, len(rows) - len(kept) + cut


class _ResumableWriter(ExperimentWriter):
    def __init__(self, log_dir: str, keep_until_step: int | None) -> None:
        self.keep_until_step = keep_until_step
        self.rows_on_disk = 0  # data rows in metrics.csv (what a checkpoint saved now covers)
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        if self.keep_until_step is None:
            return super()._check_log_dir_exists()
        if os.path.isfile(self.metrics_file_path):
            header, _ = truncate_metrics_csv(self.metrics_file_path, self.keep_until_step)
            self.metrics_keys = sorted(header)
            self.rows_on_disk = len(read_complete_rows(self.metrics_file_path)[1])

    def save(self) -> None:
        pending = len(self.metrics)
        super().save()
        self.rows_on_disk += pending

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        # Lightning rewrites in place; a kill mid-rewrite would lose the history: write + replace.
        with open(self.metrics_file_path, newline="") as f:
            rows = list(csv.DictReader(f))
        _rewrite(self.metrics_file_path, fieldnames, rows)


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

    @property
    def rows_on_disk(self) -> int:
        """Data rows written to ``metrics.csv`` so far (after :meth:`save`); rank 0 only."""
        return self.experiment.rows_on_disk

    def restore_rows(self, rows: int, pending: dict[str, Any] | None) -> None:
        """Cut ``metrics.csv`` to the first ``rows`` rows, then make sure ``pending`` follows them.

        ``pending`` (``{"step": int, "metrics": {...}}``): the row Lightning was about to write when
        the checkpoint was saved. Kept as written if the killed run got to write it, else written
        here from the checkpoint's copy, through the same code path as any logged row.
        """
        writer = self.experiment
        path = writer.metrics_file_path
        if os.path.isfile(path):
            header, on_disk, _ = read_complete_rows(path)
            kept = on_disk[:rows]
            if pending is not None and len(on_disk) > rows:
                following = on_disk[rows]
                if row_step(following) == pending["step"] and all(
                    following.get(k) not in (None, "") for k in pending["metrics"]
                ):
                    kept.append(following)
                    pending = None
            _rewrite(path, header, kept)
            writer.metrics_keys = sorted(header)
            writer.rows_on_disk = len(kept)
        if pending is not None:
            self.log_metrics(pending["metrics"], pending["step"])
            self.save()
