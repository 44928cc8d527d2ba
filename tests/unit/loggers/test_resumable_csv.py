"""``metrics.csv`` on resume: rows after the checkpoint, and a line cut by kill -9, are dropped."""

from __future__ import annotations

from pathlib import Path

from lightning_gen.loggers.resumable_csv import truncate_metrics_csv


def test_csv_truncation_keeps_rows_up_to_the_checkpoint_and_drops_a_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train/loss\n0,0,1.5\n0,1,1.25\n0,2,1.0\n0,3,0.9\n0,4,0.8")
    header, dropped = truncate_metrics_csv(str(path), keep_until_step=2)
    assert header == ["epoch", "step", "train/loss"] and dropped == 2
    assert path.read_text().splitlines() == ["epoch,step,train/loss", "0,0,1.5", "0,1,1.25", "0,2,1.0"]
    path.write_text("epoch,step,train/loss\n0,0,1.5\n0,1")  # a row cut by kill -9
    truncate_metrics_csv(str(path), keep_until_step=5)
    assert path.read_text().splitlines() == ["epoch,step,train/loss", "0,0,1.5"]
