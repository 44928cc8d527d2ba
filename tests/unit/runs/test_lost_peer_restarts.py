"""A lost peer under torchrun with restarts left (``scripts/torchrun.sh``, ``MAX_RESTARTS``): the paragraph says this
node waits for the lost one to rejoin, and the loss is recorded where torchrun's agent reads it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

from lightning_gen.cli.torchrun import restart_helps
from lightning_gen.runs.lost_peer import (
    REJOIN_TIMEOUT_ENV,
    PeerLostError,
    Ranks,
    Restart,
    lost_peer_paragraph,
    report_lost_peer,
)

GLOO = "[../third_party/gloo/gloo/transport/tcp/pair.cc:538] Connection closed by peer [127.0.0.1]:60101."
NODE_0 = Ranks(rank=0, world=2, node=0, nodes=2, per_node=1)


def lost(message: str = GLOO) -> Exception:
    try:
        raise RuntimeError(message)
    except RuntimeError as err:
        return err


@pytest.fixture
def torchrun_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The variables torchrun gives a worker of a 2-node run at its first start with ``--max-restarts 3``."""
    error_file = tmp_path / "error.json"
    env = {
        "TORCHELASTIC_RESTART_COUNT": "0",
        "TORCHELASTIC_MAX_RESTARTS": "3",
        "TORCHELASTIC_ERROR_FILE": str(error_file),
        REJOIN_TIMEOUT_ENV: "600",
        "LOCAL_RANK": "0",
        "LIGHTNING_GEN_RELAUNCH": "NNODES=2 NODE_RANK=0 RUN_ID=x scripts/torchrun.sh fit --ckpt_path last",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return error_file


def test_a_pending_restart_comes_from_torchruns_count(torchrun_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Restart.pending() == Restart(1, 3, 600)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "2")
    monkeypatch.delenv(REJOIN_TIMEOUT_ENV)
    assert Restart.pending() == Restart(3, 3, None)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "3")  # the last start: no restart follows
    assert Restart.pending() is None
    monkeypatch.delenv("TORCHELASTIC_MAX_RESTARTS")  # not under torchrun
    assert Restart.pending() is None


def test_the_paragraph_with_a_restart_says_who_to_start_again(tmp_path: Path) -> None:
    reason = "Connection closed by peer [127.0.0.1]:60101."
    text = lost_peer_paragraph(reason, tmp_path / "run", NODE_0, "CMD", restart=Restart(1, 3, 600))
    assert text.startswith("rank 0 (node 0 of 2, host ") and "lost node 1 (rank 1 at 127.0.0.1)" in text
    assert "No checkpoint was saved yet" in text and "stopped too" not in text
    assert "torchrun restarts this node's processes (restart 1 of 3) and waits up to 600 s" in text
    assert "start that node again with its own command, this node's but for its NODE_RANK (this node: `CMD`)" in text
    assert text.endswith("this node stops too: then relaunch every node with that command.") and "\n" not in text
    assert "waits for the lost node" in lost_peer_paragraph(reason, tmp_path, NODE_0, "C", restart=Restart(1, 3))


def test_report_records_the_loss_for_the_agent_which_restarts_only_after_one(torchrun_env: Path) -> None:
    with pytest.raises(PeerLostError, match=r"\(restart 1 of 3\) and waits up to 600 s") as caught:
        report_lost_peer(lost(), torchrun_env.parent, NODE_0)
    record = json.loads(torchrun_env.read_text())["message"]["message"]
    assert record == f"PeerLostError: {caught.value}"
    assert restart_helps(ProcessFailure(local_rank=0, pid=1, exitcode=1, error_file=str(torchrun_env)))
    assert restart_helps(ProcessFailure(local_rank=0, pid=1, exitcode=-9, error_file=str(torchrun_env.parent / "none")))
    bad_input = ProcessFailure(local_rank=0, pid=1, exitcode=1, error_file=str(torchrun_env.parent / "none"))
    assert not restart_helps(bad_input)


def test_the_other_local_ranks_record_it_too_and_exit_quietly(torchrun_env: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(SystemExit):
        report_lost_peer(lost(), torchrun_env.parent, NODE_0)
    assert json.loads(torchrun_env.read_text())["message"]["message"].startswith("PeerLostError: rank 0 (node 0")
