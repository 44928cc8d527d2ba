"""``python -m lightning_gen.cli.torchrun``: torchrun whose failure report is one line (``scripts/torchrun.sh``)."""

from __future__ import annotations

import pytest
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

from lightning_gen.cli import torchrun


def failing_run(error: BaseException):  # noqa: ANN201
    def run(args: object) -> None:
        raise error

    return run


def test_a_failed_rank_is_one_line_with_its_status(monkeypatch: pytest.MonkeyPatch, capsys, tmp_path) -> None:  # noqa: ANN001
    failure = ProcessFailure(local_rank=0, pid=123, exitcode=1, error_file=str(tmp_path / "none.json"))
    monkeypatch.setattr("torch.distributed.run.run", failing_run(ChildFailedError("lightning_gen", {1: failure})))
    with pytest.raises(SystemExit) as code:
        torchrun.main(["--nproc-per-node", "1", "-m", "lightning_gen", "fit"])
    assert code.value.code == 1
    err = capsys.readouterr().err
    assert err == "torchrun: this node's processes ended (rank 1: status 1); their own messages are above.\n"


def test_a_killed_rank_says_its_signal(monkeypatch: pytest.MonkeyPatch, capsys, tmp_path) -> None:  # noqa: ANN001
    failure = ProcessFailure(local_rank=0, pid=123, exitcode=-9, error_file=str(tmp_path / "none.json"))
    monkeypatch.setattr("torch.distributed.run.run", failing_run(ChildFailedError("lightning_gen", {0: failure})))
    with pytest.raises(SystemExit) as code:
        torchrun.main(["--nproc-per-node", "1", "-m", "lightning_gen", "fit"])
    assert code.value.code == 1 and "rank 0: signal 9" in capsys.readouterr().err
