"""Two "nodes" on localhost (``scripts/torchrun.sh``, 1 gloo process each): a killed node costs one paragraph on
the survivor, and relaunching every node with ``--ckpt_path last`` continues the run step by step.

A node is killed as a machine dies: ``kill -9`` of its torchrun agent, whose worker follows it
(``lightning_gen.runs.lost_peer.die_with_launcher``). Every wait has a timeout, and every process a test started
(workers live in sessions of their own) is killed at its end.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from tests.helpers.ops import cli_env, logged_steps, train_rows, write_tiny_config
from tests.helpers.paths import REPO_ROOT

TORCHRUN_SH = REPO_ROOT / "scripts" / "torchrun.sh"
RUN_ID = "x"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """``pid``'s children, grandchildren ... (from ``/proc``; empty once it is gone)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found += [child, *descendants(child)]
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Cluster:
    """Nodes started by a test: each ``VAR=value ... COMMAND`` in its own session, output in files."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.procs: list[subprocess.Popen] = []
        self.pids: set[int] = set()
        self.logs: dict[int, tuple[Path, Path]] = {}

    def start(self, command: str, label: str) -> subprocess.Popen:
        out, err = self.cwd / f"{label}.out", self.cwd / f"{label}.err"
        with open(out, "w") as fo, open(err, "w") as fe:
            proc = subprocess.Popen(
                ["bash", "-c", f"exec env {command}"],
                cwd=self.cwd,
                env=cli_env(),
                stdout=fo,
                stderr=fe,
                start_new_session=True,
            )
        self.procs.append(proc)
        self.logs[proc.pid] = (out, err)
        return proc

    def node(self, node_rank: int, args: list[str], port: int, nnodes: int = 2) -> subprocess.Popen:
        env = f"NNODES={nnodes} NODE_RANK={node_rank} NPROC=1 RUN_ID={RUN_ID} MASTER_PORT={port}"
        return self.start(f"{env} {TORCHRUN_SH} {shlex.join(args)}", f"node{node_rank}-{len(self.procs)}")

    def stderr(self, proc: subprocess.Popen) -> str:
        return self.logs[proc.pid][1].read_text()

    def remember(self) -> None:
        for proc in self.procs:
            self.pids.update([proc.pid, *descendants(proc.pid)])

    def wait(self, proc: subprocess.Popen, timeout: float) -> int:
        """``proc``'s exit status; a hang fails the test (the cluster is killed on the way out)."""
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.remember()
            pytest.fail(f"node {proc.args} still runs after {timeout} s:\n{self.stderr(proc)[-3000:]}")

    def wait_for_step(self, metrics: Path, step: int, timeout: float = 180) -> None:
        """Until a ``train/loss`` row at ``>= step`` is on disk (fails if a node ends or time runs out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.remember()
            ended = [p for p in self.procs if p.poll() is not None]
            assert not ended, f"a node ended early (status {ended[0].returncode}):\n{self.stderr(ended[0])[-3000:]}"
            try:
                steps = logged_steps(train_rows(metrics))
            except (OSError, ValueError, KeyError):
                steps = []
            if steps and max(steps) >= step:
                return
            time.sleep(0.1)
        pytest.fail(f"no step {step} in {metrics} after {timeout} s")

    def kill_all(self) -> None:
        self.remember()
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for proc in self.procs:
            proc.wait(timeout=30)


@contextmanager
def cluster(cwd: Path) -> Iterator[Cluster]:
    nodes = Cluster(cwd)
    try:
        yield nodes
    finally:
        nodes.kill_all()


def kill_node(nodes: Cluster, agent: subprocess.Popen) -> float:
    """``kill -9`` a node's torchrun agent; its worker must follow within 10 s. Returns the time of the kill."""
    nodes.remember()
    workers = descendants(agent.pid)
    assert workers, "the node has no worker yet"
    os.kill(agent.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    agent.wait(timeout=30)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers), "the killed node's worker outlived its torchrun agent"
    return killed_at


def paragraph_of(stderr: str) -> str:
    """The one ``lightning-gen: error:`` line, after checking nothing around it is a traceback."""
    assert "Traceback" not in stderr and "ChildFailedError" not in stderr, stderr[-5000:]
    lines = [line for line in stderr.splitlines() if line.startswith("lightning-gen: error:")]
    assert len(lines) == 1, stderr[-5000:]
    return lines[0]


def relaunch_commands(paragraph: str) -> list[str]:
    """Every node's relaunch command: this node's from the paragraph, the other's with its NODE_RANK."""
    (command,) = re.findall(r"this node: `([^`]+)`", paragraph)
    this = int(re.search(r"NODE_RANK=(\d)", command).group(1))
    other = command.replace(f"NODE_RANK={this}", f"NODE_RANK={1 - this}")
    return [command, other] if this == 0 else [other, command]


def kill_and_relaunch(
    tmp_path: Path, args: list[str], metrics: Path, kill: int, at_step: int, timeout_s: float = 90
) -> tuple[str, list[str], int]:
    """Run 2 nodes, kill node ``kill`` at ``at_step``, check the survivor's exit and paragraph, relaunch both
    with the paragraph's command and check they finish. Returns the paragraph, metrics.csv's lines at the kill
    and the step of the checkpoint the relaunch resumed from."""
    port = free_port()
    with cluster(tmp_path) as nodes:
        agents = [nodes.node(rank, args, port) for rank in (0, 1)]
        nodes.wait_for_step(metrics, at_step)
        killed_at = kill_node(nodes, agents[kill])
        survivor = agents[1 - kill]
        status = nodes.wait(survivor, timeout_s)
        took = time.monotonic() - killed_at
        stderr = nodes.stderr(survivor)
        assert status == 1, stderr[-3000:]
        assert took < timeout_s, took
        paragraph = paragraph_of(stderr)
        at_kill = metrics.read_text().splitlines()
        saved_step = checkpoint_step(metrics.parent)
        relaunched = [
            nodes.start(command, f"relaunch{rank}") for rank, command in enumerate(relaunch_commands(paragraph))
        ]
        for proc in relaunched:
            assert nodes.wait(proc, 240) == 0, nodes.stderr(proc)[-3000:]
    return paragraph, at_kill, saved_step


def check_paragraph(paragraph: str, lost: int, run_dir: Path, config: Path) -> None:
    survivor = 1 - lost
    assert paragraph.startswith(f"lightning-gen: error: rank {survivor} (node {survivor} of 2, host ")
    assert f"lost node {lost} (rank {lost} at 127.0.0.1{', the master' if lost == 0 else ''})" in paragraph
    assert f"The newest checkpoint is {run_dir / 'checkpoints' / 'last.ckpt'} (saved " in paragraph
    assert (
        f"NODE_RANK={survivor} NPROC=1" in paragraph
        and f"RUN_ID={RUN_ID} {TORCHRUN_SH} fit --config {config}" in paragraph
    )
    assert paragraph.endswith(f"--ckpt_path last`. The run continues in {run_dir}.")


def check_continued(metrics: Path, at_kill: list[str], checkpoint_step: int, expected_steps: list[int]) -> None:
    """Every step logged once; the rows before the checkpoint the relaunch resumed from are those of the first launch."""
    assert logged_steps(train_rows(metrics)) == expected_steps
    kept = [row for row in at_kill[1:] if int(row.split(",")[1]) < checkpoint_step]
    assert metrics.read_text().splitlines()[1 : 1 + len(kept)] == kept


def checkpoint_step(run_dir: Path) -> int:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")["global_step"]


@pytest.mark.timeout(600)
def test_a_killed_node_costs_one_paragraph_and_the_relaunch_continues(tmp_path: Path) -> None:
    """kill -9 node 1 at step >= 5 of 16: node 0 stops in seconds with the paragraph; the paragraph's command
    (and node 1's) continue from the step-checkpoint (every 2 steps), each step logged once."""
    config = write_tiny_config(tmp_path, epochs=4)  # 4 steps per epoch on 2 ranks
    args = ["fit", "--config", str(config), "--trainer.accelerator=cpu"]
    run_dir = tmp_path / "runs" / "tiny" / RUN_ID
    metrics = run_dir / "metrics.csv"
    paragraph, at_kill, saved_step = kill_and_relaunch(tmp_path, args, metrics, kill=1, at_step=5, timeout_s=60)
    check_paragraph(paragraph, 1, run_dir, config)
    assert saved_step >= 4
    check_continued(metrics, at_kill, saved_step, list(range(16)))
    assert checkpoint_step(run_dir) == 16
