"""The paragraph a rank prints when a peer of its run is gone (``lightning_gen/runs/lost_peer.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lightning_gen.runs.lost_peer import (
    RELAUNCH_ENV,
    PeerLostError,
    Ranks,
    lost_peer,
    lost_peer_paragraph,
    relaunch_command,
    report_lost_peer,
)

GLOO = (
    "[../third_party/gloo/gloo/transport/tcp/pair.cc:538] Connection closed by peer [127.0.0.1]:60101. This is "
    "typically caused by a remote worker crashing. Check the logs of the remote worker before reporting an error. "
    "GLHF! 🏖️"
)
TWO_NODES = Ranks(rank=1, world=2, node=1, nodes=2, per_node=1)


def chained(message: str) -> Exception:
    """``message`` as torch raises it, under the error Lightning re-raises around it."""
    try:
        try:
            raise RuntimeError(message)
        except RuntimeError as inner:
            raise ValueError("while running the training loop") from inner
    except ValueError as outer:
        return outer


def test_the_gloo_line_is_found_in_the_chain_without_location_and_advice() -> None:
    assert lost_peer(chained(GLOO)) == "Connection closed by peer [127.0.0.1]:60101."


def test_other_errors_are_not_a_lost_peer() -> None:
    assert lost_peer(chained("mat1 and mat2 shapes cannot be multiplied")) is None
    assert lost_peer(BrokenPipeError("Broken pipe")) is None  # stdout closed: not a collective


def test_paragraph_names_the_lost_node_the_checkpoint_and_the_command(tmp_path: Path) -> None:
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"x")
    text = lost_peer_paragraph("Connection closed by peer [10.0.0.7]:60101.", tmp_path / "run", TWO_NODES, "CMD")
    assert text.startswith("rank 1 (node 1 of 2, host ")
    assert "lost node 0 (rank 0 at 10.0.0.7, the master)" in text
    assert f"The newest checkpoint is {last} (saved " in text
    assert "this node: `CMD`" in text and "\n" not in text


def test_paragraph_without_checkpoint_and_after_a_timeout(tmp_path: Path) -> None:
    text = lost_peer_paragraph("Timed out waiting 30000ms for recv operation to complete", tmp_path, TWO_NODES, "C")
    assert "lost a peer that stopped answering" in text
    assert "No checkpoint was saved yet" in text and "starts the run over" in text


def test_relaunch_is_the_launchers_else_lightning_gen_with_ckpt_path_last(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RELAUNCH_ENV, raising=False)
    command = relaunch_command(["fit", "--config", "a b.yaml", "--ckpt_path", "x.ckpt", "--ckpt_path=y"], "r1")
    assert command == "LIGHTNING_GEN_RUN_ID=r1 lightning-gen fit --config 'a b.yaml' --ckpt_path last"
    monkeypatch.setenv(RELAUNCH_ENV, "NODE_RANK=1 scripts/torchrun.sh fit --ckpt_path last")
    assert relaunch_command(["fit"], "r1") == "NODE_RANK=1 scripts/torchrun.sh fit --ckpt_path last"


def test_report_raises_the_paragraph_on_local_rank_0_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    report_lost_peer(chained(GLOO), tmp_path, Ranks())  # one process: not a lost peer
    report_lost_peer(chained("a bug"), tmp_path, TWO_NODES)  # not a lost peer: the caller re-raises
    with pytest.raises(PeerLostError, match=r"^rank 1 \(node 1 of 2") as caught:
        report_lost_peer(chained(GLOO), tmp_path, TWO_NODES)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(SystemExit):
        report_lost_peer(chained(GLOO), tmp_path, TWO_NODES)


def test_ranks_from_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"RANK": "5", "WORLD_SIZE": "8", "GROUP_RANK": "1", "GROUP_WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "4"}
    monkeypatch.setattr(os, "environ", {**os.environ, **env})
    ranks = Ranks.of(None)
    assert ranks == Ranks(5, 8, 1, 2, 4) and ranks.ranks_of(0) == "ranks 0-3"


def test_lightning_gen_prints_it_as_one_paragraph(capsys: pytest.CaptureFixture[str]) -> None:
    from lightning_gen.__main__ import exit_on_user_error

    with pytest.raises(SystemExit) as code:
        exit_on_user_error(PeerLostError("rank 1 lost node 0."))
    assert code.value.code == 1
    assert capsys.readouterr().err == "lightning-gen: error: rank 1 lost node 0.\n"
