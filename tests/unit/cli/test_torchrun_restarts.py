"""``python -m lightning_gen.cli.torchrun`` with ``--max-restarts``: torchrun's real agent restarts a node's processes
only after a lost peer (or a kill), never after bad input; a rendezvous that cannot form ends in one line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from lightning_gen.runs.lost_peer import RELAUNCH_ENV, PeerLostError, record_for_launcher
from lightning_gen.sweeps.devices import free_loopback_port
from tests.helpers.ops import cli_env

#: a worker that counts its starts and fails, leaving the error record it is given (or none) for the agent
WORKER = """\
import os, shutil, sys
with open(sys.argv[1], "a") as starts:
    starts.write("start\\n")
if sys.argv[2] != "-":
    shutil.copy(sys.argv[2], os.environ["TORCHELASTIC_ERROR_FILE"])
print("lightning-gen: error: the paragraph", file=sys.stderr)
sys.exit(1)
"""


def agent(
    tmp_path: Path, nnodes: int, port: int, worker_args: list[str], host: bool = True, join_timeout: int = 3
) -> list[str]:
    """A torchrun agent of ``nnodes`` on 127.0.0.1 (c10d, 2 restarts) running ``WORKER``; ``host``: it serves the
    rendezvous store."""
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    rdzv = ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "t"]
    command = [sys.executable, "-m", "lightning_gen.cli.torchrun", "--nnodes", str(nnodes), "--nproc-per-node", "1"]
    command += [
        *rdzv,
        "--rdzv-conf",
        f"join_timeout={join_timeout},is_host={int(host)}",
        "--max-restarts",
        "2",
        "--monitor-interval",
        "0.1",
    ]
    return [*command, "--local-addr", "127.0.0.1", str(worker), *worker_args]


ENV = {**cli_env(), RELAUNCH_ENV: "NODE_RANK=0 scripts/torchrun.sh fit --ckpt_path last"}


def torchrun(tmp_path: Path, nnodes: int, worker_args: list[str]) -> subprocess.CompletedProcess:
    command = agent(tmp_path, nnodes, free_loopback_port(), worker_args)
    return subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)


@pytest.fixture
def lost_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The error record of a lost peer, as ``report_lost_peer`` writes it."""
    record = tmp_path / "lost.json"
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(record))
    record_for_launcher(PeerLostError("rank 0 (node 0 of 2, host h) lost node 1 ..."))
    return record


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_restarts_follow_a_lost_peer_only(tmp_path: Path, lost_record: Path) -> None:
    """A lost peer: 1 start + 2 restarts; bad input: 1 start."""
    for name, given, starts in (("lost", str(lost_record), 3), ("bad", "-", 1)):
        counted = tmp_path / f"{name}.starts"
        done = torchrun(tmp_path, 1, [str(counted), given])
        assert done.returncode == 1, done.stderr[-3000:]
        assert counted.read_text().count("start") == starts, (name, done.stderr[-3000:])
        assert done.stderr.count("lightning-gen: error: the paragraph") == starts
        assert "Traceback" not in done.stderr and "ChildFailedError" not in done.stderr
        assert done.stderr.endswith(
            "torchrun: this node's processes ended (rank 0: status 1); their own messages are above.\n"
        )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_node_alone_past_the_rendezvous_timeout_stops_with_one_line(tmp_path: Path) -> None:
    """2 nodes wanted, 1 started: after ``join_timeout`` (3 s) one line with the relaunch command, no traceback."""
    done = torchrun(tmp_path, 2, [str(tmp_path / "starts"), "-"])
    assert done.returncode == 1 and not (tmp_path / "starts").exists()
    assert done.stderr.splitlines()[-1] == (
        "torchrun: not every node of this run joined within the rendezvous timeout (3 s); this node stopped. To "
        "resume, relaunch every node with the same run id and `--ckpt_path last`; this node: "
        "`NODE_RANK=0 scripts/torchrun.sh fit --ckpt_path last`."
    )
    assert "Traceback" not in done.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_node_stopped_by_bad_input_ends_the_others_restart(tmp_path: Path, lost_record: Path) -> None:
    """2 nodes: node 1's process fails with bad input (no restart), node 0's lost its peer (restart): node 1's
    torchrun closes the rendezvous as it stops, so node 0's restart ends at once (not after the 60 s timeout)."""
    port = free_loopback_port()
    starts = [tmp_path / "node0.starts", tmp_path / "node1.starts"]
    given = [str(lost_record), "-"]
    started = time.monotonic()
    nodes = [
        subprocess.Popen(
            agent(tmp_path, 2, port, [str(starts[rank]), given[rank]], host=rank == 0, join_timeout=60),
            cwd=tmp_path,
            env=ENV,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    try:
        errs = [node.communicate(timeout=120)[1] for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    assert [node.returncode for node in nodes] == [1, 1], errs
    assert time.monotonic() - started < 50
    assert [path.read_text().count("start") for path in starts] == [1, 1], errs
    assert errs[0].splitlines()[-1].startswith("torchrun: another node ended this run (its own console says why)")
    assert errs[1].splitlines()[-1].startswith("torchrun: this node's processes ended (rank 1: status 1)")
    assert "Traceback" not in errs[0] + errs[1]
