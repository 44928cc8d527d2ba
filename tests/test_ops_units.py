"""Fast unit tests of the operations pieces: resumable loader, CSV truncation, run ids, compare, progress."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from datamodules.resumable import ResumableDataLoader
from gen_common.errors import ConfigError
from lightning_gen.commands.compare import flatten, load_run, summarize
from lightning_gen.loggers.resumable_csv import truncate_metrics_csv
from lightning_gen.runs.env import RUN_ID as RUN_ID_ENV
from lightning_gen.runs.layout import new_run_id


def _epoch(loader: ResumableDataLoader, epoch: int) -> list[list[int]]:
    loader.sampler.set_epoch(epoch)
    return [batch[0].tolist() for batch in loader]


def test_resumable_loader_continues_mid_epoch_with_the_same_batches() -> None:
    data = TensorDataset(torch.arange(40))
    full = ResumableDataLoader(data, batch_size=4, seed=3)
    epoch0, epoch1 = _epoch(full, 0), _epoch(full, 1)
    assert epoch0 != epoch1 and sorted(sum(epoch0, [])) == list(range(40))  # a permutation per epoch

    partial = ResumableDataLoader(data, batch_size=4, seed=3)
    partial.sampler.set_epoch(1)
    it = iter(partial)
    seen = [next(it)[0].tolist() for _ in range(3)]
    state = partial.state_dict()
    assert state == {"epoch": 1, "batches": 3}

    resumed = ResumableDataLoader(data, batch_size=4, seed=3)
    resumed.load_state_dict(state)
    assert seen + _epoch(resumed, 1) == epoch1  # the rest of epoch 1, nothing repeated or skipped
    assert _epoch(resumed, 2) == _epoch(full, 2)  # later epochs unaffected


def test_resumable_loader_state_at_epoch_end_starts_the_next_epoch() -> None:
    data = TensorDataset(torch.arange(12))
    loader = ResumableDataLoader(data, batch_size=4, seed=0)
    loader.load_state_dict({"epoch": 0, "batches": 3})
    assert loader.sampler.epoch == 1 and len(_epoch(loader, 1)) == 3


def test_csv_truncation_keeps_rows_up_to_the_checkpoint_and_drops_a_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train/loss\n0,0,1.5\n0,1,1.25\n0,2,1.0\n0,3,0.9\n0,4,0.8")
    header, dropped = truncate_metrics_csv(str(path), keep_until_step=2)
    assert header == ["epoch", "step", "train/loss"] and dropped == 2
    assert path.read_text().splitlines() == ["epoch,step,train/loss", "0,0,1.5", "0,1,1.25", "0,2,1.0"]
    path.write_text("epoch,step,train/loss\n0,0,1.5\n0,1")  # a row cut by kill -9
    truncate_metrics_csv(str(path), keep_until_step=5)
    assert path.read_text().splitlines() == ["epoch,step,train/loss", "0,0,1.5"]


def test_externally_launched_ranks_need_a_shared_run_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="--run.id NAME"):
        new_run_id()
    monkeypatch.setenv(RUN_ID_ENV, "shared")
    assert new_run_id() == "shared"
    monkeypatch.delenv(RUN_ID_ENV)
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    assert new_run_id() == "slurm-77"


def test_compare_table_has_final_best_and_differing_config(tmp_path: Path) -> None:
    for name, lr, values in (("a", 0.1, [-5.0, -3.0, -4.0]), ("b", 0.01, [-6.0, -2.0, -2.5])):
        run = tmp_path / "exp" / name
        run.mkdir(parents=True)
        run.joinpath("metrics.csv").write_text(
            "epoch,step,val/elbo\n" + "".join(f"{i},{i},{v}\n" for i, v in enumerate(values))
        )
        run.joinpath("config.yaml").write_text(
            f"model:\n  init_args:\n    lr: {lr}\n    width: 8\nrun:\n  id: {name}\n"
        )
    runs = [load_run(tmp_path / "exp" / n) for n in ("a", "b")]
    header, rows, differing = summarize(runs, ["val/elbo"], maximize={"val/elbo"})
    assert differing == ["model.init_args.lr"]  # width is equal, run.id is ignored
    assert header == ["run", "model.lr", "val/elbo final", "val/elbo best"]
    assert rows == [["exp/a", "0.1", "-4", "-3"], ["exp/b", "0.01", "-2.5", "-2"]]
    assert flatten({"a": {"b": [1, 2]}}) == {"a.b": [1, 2]}


def test_progress_bar_only_in_an_interactive_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning_gen.cli import trainer as cli

    monkeypatch.setattr(cli.sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.delenv("CI", raising=False)
    assert cli._want_progress_bar("auto") is True
    monkeypatch.setenv("CI", "true")
    assert cli._want_progress_bar("auto") is False
    assert cli._want_progress_bar("none") is False and cli._want_progress_bar("rich") is True
