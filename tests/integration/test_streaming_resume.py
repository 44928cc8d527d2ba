"""kill -9 in the middle of an epoch of a run that streams LitData shards, ``--ckpt_path last``: every image of
that epoch is trained on exactly once, in the order of an unbroken run; in one process and in 2-process DDP.

The shards hold 72 training images whose pixels carry their ids (``tests.helpers.shards``); a callback
records the ids each rank trains on, per step. The run is killed with kill -9 at the start of a step
(``FaultAt``); ``last.ckpt`` is the step checkpoint written 1 or 2 steps before. The unbroken reference and
the one-process resume run in this process.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest
import torch

from tests.helpers.cli import run_main
from tests.helpers.ops import fault_at_callback, run_cli
from tests.helpers.shards import epoch_ids, id_recorder_callback, make_image_shards, recorded, write_shard_fit_config

pytestmark = pytest.mark.slow

DDP = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_shards(tmp_path_factory.mktemp("resume_shards"))


def _fit_args(folder: Path, shards: Path, workers: int, run_id: str) -> list[str]:
    config = write_shard_fit_config(folder / "shards.yaml", root=str(shards), num_workers=workers)
    return ["fit", "--config", str(config), "--run.id", run_id, "--trainer.callbacks+=" + id_recorder_callback(folder)]


def _killed_then_resumed(
    folder: Path, shards: Path, workers: int, kill_step: int, ddp: bool
) -> tuple[list[dict], list[dict], int]:
    """Rows of the killed run, rows of the resumed run, and the step of the checkpoint it resumed from."""
    args = _fit_args(folder, shards, workers, "k") + (DDP if ddp else [])
    kill = ["--trainer.callbacks+=" + fault_at_callback(kill_step, "on_train_batch_start")]
    # a new interpreter, not tests.helpers.forked: a forkserver child starts its DataLoader workers from the
    # forkserver, where they outlive a kill -9 of the run (their watchdog watches the forkserver)
    killed = run_cli(args + kill, folder)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    last = folder / "runs" / "shards" / "k" / "checkpoints" / "last.ckpt"
    resumed_at = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    first = recorded(folder)
    for path in folder.glob("ids-rank*.jsonl"):
        path.unlink()
    resume = (run_cli if ddp else run_main)(args + ["--ckpt_path", "last"], folder)
    assert resume.returncode == 0, resume.stderr[-3000:]
    return first, recorded(folder), resumed_at


@pytest.mark.parametrize("workers", [0, 2])
def test_kill9_mid_epoch_then_resume_trains_on_each_image_once_as_unbroken(
    tmp_path: Path, shards: Path, workers: int
) -> None:
    (tmp_path / "ref").mkdir()
    unbroken = run_main(_fit_args(tmp_path / "ref", shards, workers, "ref"), tmp_path / "ref")
    assert unbroken.returncode == 0, unbroken.stderr[-3000:]
    reference = recorded(tmp_path / "ref")
    assert [r["step"] for r in reference] == list(range(36))  # 2 epochs x 72 images / 4

    (tmp_path / "k").mkdir()
    first, second, resumed_at = _killed_then_resumed(tmp_path / "k", shards, workers, kill_step=7, ddp=False)
    assert resumed_at == 6 and max(r["step"] for r in first) >= 6  # killed mid-epoch, after the checkpoint
    assert [r["step"] for r in second] == list(range(6, 36))
    assert [r["ids"] for r in second] == [r["ids"] for r in reference[6:]]  # the very batches of an unbroken run
    for epoch in (0, 1):
        seen = epoch_ids(first, second, resumed_at, epoch)
        assert set(seen.values()) == {1} and len(seen) == 72, seen


def test_ddp_kill9_mid_epoch_then_resume_each_rank_its_own_images_once(tmp_path: Path, shards: Path) -> None:
    first, second, resumed_at = _killed_then_resumed(tmp_path, shards, workers=2, kill_step=5, ddp=True)
    assert resumed_at == 4
    by_rank = {rank: [r for r in second if r["rank"] == rank] for rank in (0, 1)}
    assert all([r["step"] for r in rows] == list(range(4, 18)) for rows in by_rank.values())  # 9 steps per epoch
    for epoch in (0, 1):
        seen = epoch_ids(first, second, resumed_at, epoch)
        assert set(seen.values()) == {1} and len(seen) == 72, seen  # 36 per rank, none twice
        ranks = [
            Counter(i for r in first + second if r["rank"] == rank and r["epoch"] == epoch for i in r["ids"])
            for rank in (0, 1)
        ]
        assert not set(ranks[0]) & set(ranks[1])  # disjoint parts
