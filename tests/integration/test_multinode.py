"""Two "nodes" on localhost (``scripts/torchrun.sh``, 1 gloo process each): a killed node costs one paragraph on
the survivor, and relaunching every node with ``--ckpt_path last`` continues the run step by step. With restarts
on (torchrun.sh's default for 2 nodes), a killed node started again rejoins the run; a lost rendezvous host or a
node that does not come back in time ends the survivor with the paragraph and one line from the launcher.

A node is killed as a machine dies: ``kill -9`` of its torchrun agent, whose worker follows it
(``lightning_gen.runs.lost_peer.die_with_launcher``). Every wait has a timeout, and every process a test started
(workers live in sessions of their own) is killed at its end.
"""

from __future__ import annotations

import csv
import math
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from lightning_gen.sweeps.devices import free_loopback_port
from tests.helpers.ops import cli_env, logged_steps, train_rows, wandb_segments, write_tiny_config
from tests.helpers.paths import EXPERIMENTS, REPO_ROOT

TORCHRUN_SH = REPO_ROOT / "scripts" / "torchrun.sh"
RUN_ID = "x"
RESTARTS_OFF = "MAX_RESTARTS=0"  # a lost node stops the run (torchrun.sh restarts 3 times by default with 2 nodes)


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

    def node(self, node_rank: int, args: list[str], port: int, nnodes: int = 2, settings: str = "") -> subprocess.Popen:
        """``scripts/torchrun.sh ARGS`` as node ``node_rank`` on 127.0.0.1, with torchrun.sh ``settings``
        (``VAR=value ...``; none: its defaults)."""
        env = f"NNODES={nnodes} NODE_RANK={node_rank} NPROC=1 RUN_ID={RUN_ID} MASTER_PORT={port} LOCAL_ADDR=127.0.0.1"
        return self.start(f"{env} {settings} {TORCHRUN_SH} {shlex.join(args)}", f"node{node_rank}-{len(self.procs)}")

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

    def wait_for_line(self, proc: subprocess.Popen, start: str, timeout: float) -> str:
        """The first line of ``proc``'s stderr that starts with ``start`` (fails if it does not come in time)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.remember()
            found = [line for line in self.stderr(proc).splitlines() if line.startswith(start)]
            if found:
                return found[0]
            assert proc.poll() is None, f"{proc.args} ended (status {proc.returncode}):\n{self.stderr(proc)[-3000:]}"
            time.sleep(0.1)
        pytest.fail(f"no line {start!r} from {proc.args} after {timeout} s:\n{self.stderr(proc)[-3000:]}")

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
    """The one ``lightning-gen: error:`` line, after checking nothing around it is a traceback (Python's, torchrun's
    or c10d's C++ stack frames)."""
    assert "Traceback" not in stderr and "ChildFailedError" not in stderr and "frame #" not in stderr, stderr[-5000:]
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
    tmp_path: Path,
    args: list[str],
    metrics: Path,
    kill: int,
    at_step: int,
    timeout_s: float = 90,
    settings: str = RESTARTS_OFF,
) -> tuple[str, list[str], int, str]:
    """Run 2 nodes, kill node ``kill`` at ``at_step``, check the survivor's exit and paragraph, relaunch both
    with the paragraph's command and check they finish. Returns the paragraph, metrics.csv's lines at the kill,
    the step of the checkpoint the relaunch resumed from and the survivor's last line."""
    port = free_loopback_port()
    with cluster(tmp_path) as nodes:
        agents = [nodes.node(rank, args, port, settings=settings) for rank in (0, 1)]
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
    return paragraph, at_kill, saved_step, stderr.splitlines()[-1]


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
    """Every step logged once; the rows before the checkpoint the relaunch resumed from are those of the first
    launch (the header may have gained columns since: a row's new columns are empty)."""
    assert logged_steps(train_rows(metrics)) == expected_steps
    kept = [row for row in csv.DictReader(at_kill) if int(row["step"]) < checkpoint_step]
    final = train_rows(metrics)[: len(kept)]
    assert [{k: row[k] for k in kept[0]} for row in final] == kept
    assert all(not value for row in final for key, value in row.items() if key not in kept[0])


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
    paragraph, at_kill, saved_step, _ = kill_and_relaunch(tmp_path, args, metrics, kill=1, at_step=5, timeout_s=60)
    check_paragraph(paragraph, 1, run_dir, config)
    assert "so this node stopped too" in paragraph and "torchrun restarts" not in paragraph
    assert saved_step >= 4
    check_continued(metrics, at_kill, saved_step, list(range(16)))
    assert checkpoint_step(run_dir) == 16


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_killed_node_started_again_rejoins_and_the_run_continues(tmp_path: Path) -> None:
    """Restarts on (torchrun.sh's default for 2 nodes): kill -9 node 1 at step >= 5 of 16 and start it again with
    the same command. Node 0 restarts its process, both rejoin and resume from the step-checkpoint: each step is
    logged once and the run ends complete in its one run dir, as the relaunch of every node leaves it."""
    config = write_tiny_config(tmp_path, epochs=4)
    args = ["fit", "--config", str(config), "--trainer.accelerator=cpu"]
    run_dir = tmp_path / "runs" / "tiny" / RUN_ID
    metrics = run_dir / "metrics.csv"
    port = free_loopback_port()
    with cluster(tmp_path) as nodes:
        agents = [nodes.node(rank, args, port) for rank in (0, 1)]
        nodes.wait_for_step(metrics, 5)
        kill_node(nodes, agents[1])
        nodes.wait_for_line(agents[0], "lightning-gen: error:", 60)  # node 0's process has ended
        at_kill, saved_step = metrics.read_text().splitlines(), checkpoint_step(run_dir)
        replacement = nodes.node(1, args, port)
        for agent in (agents[0], replacement):
            assert nodes.wait(agent, 300) == 0, nodes.stderr(agent)[-3000:]
    paragraph = paragraph_of(nodes.stderr(agents[0]))
    assert paragraph.startswith("lightning-gen: error: rank 0 (node 0 of 2, host ")
    assert "lost node 1 (rank 1 at 127.0.0.1): " in paragraph  # gloo: "Connection closed by peer", "Read error"
    assert "torchrun restarts this node's processes (restart 1 of 3) and waits up to 600 s" in paragraph
    assert f"this node: `NNODES=2 NODE_RANK=0 NPROC=1 MASTER_ADDR=127.0.0.1 MASTER_PORT={port}" in paragraph
    assert "Restored all states from the checkpoint" in nodes.stderr(agents[0])
    assert "Traceback" not in nodes.stderr(replacement) and "error" not in nodes.stderr(replacement)
    assert saved_step >= 4
    check_continued(metrics, at_kill, saved_step, list(range(16)))
    assert checkpoint_step(run_dir) == 16
    kept = [name for name in tree_listing(run_dir) if not name.startswith("wandb/")]
    assert kept == [
        "checkpoints/epoch=3-step=16.ckpt",
        "checkpoints/last.ckpt",
        "config.yaml",
        "devices.jsonl",
        f"history/config-at-step-{saved_step}.yaml",  # the resume's record
        "hparams.yaml",
        "metrics.csv",
    ]
    assert len(wandb_segments(run_dir)) == 2  # the first start and the resume, one W&B run id


def experiment_args(*configs: str) -> list[str]:
    """An experiment file + ``debug.yaml`` (20 steps), every step logged, ``last.ckpt`` every 4 steps."""
    files = [arg for name in configs for arg in ("--config", str(EXPERIMENTS / f"{name}.yaml"))]
    return [
        "fit",
        *files,
        "--config",
        str(EXPERIMENTS / "debug.yaml"),
        "--trainer.accelerator=cpu",
        "--trainer.log_every_n_steps=1",
        "--run.checkpoint_every_n_steps=4",
    ]


#: what the survivor's launcher says last, with restarts on: the rendezvous host is gone, or no node came back
LAST_LINES = {
    0: "torchrun: the rendezvous store at 127.0.0.1:{port}, kept by the torchrun of the rendezvous host (NODE_RANK=0 "
    "with scripts/torchrun.sh), is gone or unreachable; this node stopped. To resume, relaunch every node",
    1: "torchrun: not every node of this run joined within the rendezvous timeout (20 s); this node stopped. To "
    "resume, relaunch every node",
}


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize(("experiment", "kill"), [("vae_mnist", 0), ("gpt_shakespeare_char", 1)])
def test_killed_node_of_an_experiment_then_relaunched(tmp_path: Path, experiment: str, kill: int) -> None:
    """The issue's command with restarts on: kill -9 the master (image; torchrun's rendezvous store dies with it)
    or node 1, not started again (text; 20 s to rejoin) at step >= 10 of 20. The survivor prints the paragraph
    and the launcher's line; the relaunch resumes from the newest step-checkpoint and logs each step once."""
    args = experiment_args(experiment)
    run_dir = tmp_path / "runs" / "debug" / experiment / RUN_ID
    metrics = run_dir / "metrics.csv"
    settings = "REJOIN_TIMEOUT_S=20" if kill else ""
    paragraph, at_kill, saved_step, last = kill_and_relaunch(
        tmp_path, args, metrics, kill=kill, at_step=10, timeout_s=90, settings=settings
    )
    assert "torchrun restarts this node's processes (restart 1 of 3)" in paragraph
    port = re.search(r"MASTER_PORT=(\d+)", paragraph).group(1)
    assert last.startswith(LAST_LINES[kill].format(port=port)) and last.endswith("--ckpt_path last`."), last
    lost = kill
    assert paragraph.startswith(f"lightning-gen: error: rank {1 - lost} (node {1 - lost} of 2, host ")
    assert f"lost node {lost} (rank {lost} at 127.0.0.1" in paragraph
    assert f"The newest checkpoint is {run_dir / 'checkpoints' / 'last.ckpt'} (saved " in paragraph
    assert saved_step >= 8
    check_continued(metrics, at_kill, saved_step, list(range(20)))
    assert checkpoint_step(run_dir) == 20


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_node_that_stops_answering_ends_the_survivor_within_the_collective_timeout(tmp_path: Path) -> None:
    """SIGSTOP of node 1 (a host that vanished without closing its sockets): node 0 waits the collective
    timeout (30 s), then prints the paragraph; it never hangs."""
    config = write_tiny_config(tmp_path, epochs=8)
    args = ["fit", "--config", str(config), "--trainer.accelerator=cpu", "--run.collective_timeout_min=0.5"]
    metrics = tmp_path / "runs" / "tiny" / RUN_ID / "metrics.csv"
    port = free_loopback_port()
    with cluster(tmp_path) as nodes:
        agents = [nodes.node(rank, args, port, settings=RESTARTS_OFF) for rank in (0, 1)]
        nodes.wait_for_step(metrics, 5)
        nodes.remember()
        for pid in [agents[1].pid, *descendants(agents[1].pid)]:
            os.kill(pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        status = nodes.wait(agents[0], 120)
        took = time.monotonic() - stopped_at
    paragraph = paragraph_of(nodes.stderr(agents[0]))
    assert status == 1 and 25 < took < 120, (status, took)
    assert "lost a peer that stopped answering (no message within the collective timeout" in paragraph
    assert "--ckpt_path last`" in paragraph


def tree_listing(run_dir: Path) -> list[str]:
    """The run dir's files, W&B's time-stamped folder names made comparable."""
    names = [str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()]
    return sorted(re.sub(r"run-\d{8}_\d{6}-", "run-T-", name) for name in names)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_two_node_run_equals_a_two_process_single_node_run(tmp_path: Path) -> None:
    """2 nodes x 1 process (torchrun.sh) and 1 node x 2 processes (Lightning's DDP): the same files, the same
    metrics.csv rows and the same weights (to float rounding)."""
    from tests.helpers.ops import run_cli, state_dict

    two_nodes, one_node = tmp_path / "nodes", tmp_path / "single"
    for folder in (two_nodes, one_node):
        folder.mkdir()
        write_tiny_config(folder, epochs=2)
    args = ["fit", "--config", "tiny.yaml", "--trainer.accelerator=cpu"]
    port = free_loopback_port()
    with cluster(two_nodes) as nodes:
        agents = [nodes.node(rank, args, port) for rank in (0, 1)]
        for agent in agents:
            assert nodes.wait(agent, 300) == 0, nodes.stderr(agent)[-3000:]
    single = run_cli([*args, "--trainer.strategy=ddp", "--trainer.devices=2", f"--run.id={RUN_ID}"], one_node)
    assert single.returncode == 0, single.stderr[-3000:]
    a, b = two_nodes / "runs" / "tiny" / RUN_ID, one_node / "runs" / "tiny" / RUN_ID
    assert tree_listing(a) == tree_listing(b)
    rows_a, rows_b = train_rows(a / "metrics.csv"), train_rows(b / "metrics.csv")
    assert [row.keys() for row in rows_a] == [row.keys() for row in rows_b]
    for row_a, row_b in zip(rows_a, rows_b, strict=True):  # the last float digits differ
        for key, value in row_a.items():
            assert (value == row_b[key]) if not value else math.isclose(float(value), float(row_b[key]), rel_tol=1e-5)
    for name in ("last.ckpt", "epoch=1-step=8.ckpt"):
        left, right = state_dict(a / "checkpoints" / name), state_dict(b / "checkpoints" / name)
        assert left.keys() == right.keys()
        assert all(torch.allclose(left[k].float(), right[k].float(), rtol=1e-4, atol=1e-6) for k in left)


FAKE_SRUN = """#!/bin/bash
# srun on one machine: SLURM_NTASKS tasks with the variables srun gives each; SIGTERM goes to every task
while [[ "$1" == -* ]]; do shift; done
pids=()
for ((i = 0; i < SLURM_NTASKS; i++)); do
  SLURM_PROCID=$i SLURM_LOCALID=$((i % SLURM_NTASKS_PER_NODE)) SLURM_NODEID=$((i / SLURM_NTASKS_PER_NODE)) \\
    SLURM_STEP_ID=0 SLURM_STEPID=0 "$@" &
  pids+=($!)
done
trap 'kill -TERM "${pids[@]}" 2>/dev/null' TERM
status=0
for pid in "${pids[@]}"; do
  while true; do wait "$pid"; code=$?; kill -0 "$pid" 2>/dev/null || break; done
  [[ "$code" != 0 ]] && status=$code
done
exit "$status"
"""
FAKE_SCONTROL = '#!/bin/bash\necho "$@" >> "$SCONTROL_LOG"\n'


def slurm_env(tmp_path: Path, port: int) -> dict[str, str]:
    """What sbatch gives ``scripts/slurm.sbatch`` for 2 nodes of 1 task each, both nodes this machine."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    venv_bin = Path(os.sys.executable).parent
    return {
        **cli_env(),
        "PATH": f"{bin_dir}:{venv_bin}:{os.environ['PATH']}",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOBID": "4242",
        "SLURM_JOB_NAME": "lightning-gen",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NNODES": "2",
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_NODELIST": "127.0.0.1,127.0.0.1",
        "SLURM_JOB_NODELIST": "127.0.0.1,127.0.0.1",
        "SLURM_SUBMIT_DIR": str(tmp_path),
        "MASTER_PORT": str(port),
        "SCONTROL_LOG": str(tmp_path / "scontrol.log"),
    }


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_slurm_script_under_srun_variables_checkpoints_requeues_and_resumes(tmp_path: Path) -> None:
    """``scripts/slurm.sbatch`` with srun's variables for 2 tasks: Lightning takes its SLURM environment (one run
    dir ``slurm-<job id>``); SIGUSR1 (the time-limit warning) saves last.ckpt, exits 0 and requeues; the requeued
    start continues the run with each step logged once."""
    config = write_tiny_config(tmp_path, epochs=4)
    env = slurm_env(tmp_path, free_loopback_port())
    command = [
        "bash",
        str(REPO_ROOT / "scripts" / "slurm.sbatch"),
        "--config",
        str(config),
        "--trainer.accelerator=cpu",
    ]
    run_dir = tmp_path / "runs" / "tiny" / "slurm-4242"
    metrics = run_dir / "metrics.csv"
    job = Cluster(tmp_path)
    try:
        first = subprocess.Popen(
            command,
            cwd=tmp_path,
            env=env,
            stdout=open(tmp_path / "job1.out", "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        job.procs.append(first)
        job.logs[first.pid] = (tmp_path / "job1.out", tmp_path / "job1.out")
        job.wait_for_step(metrics, 5)
        os.kill(first.pid, signal.SIGUSR1)
        assert job.wait(first, 120) == 0, job.stderr(first)[-3000:]
        assert (tmp_path / "scontrol.log").read_text() == "requeue 4242\n"
        saved = checkpoint_step(run_dir)
        assert 5 <= saved < 16
        at_requeue = metrics.read_text().splitlines()
        second = subprocess.Popen(
            command,
            cwd=tmp_path,
            env={**env, "SLURM_RESTART_COUNT": "1"},
            stdout=open(tmp_path / "job2.out", "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        job.procs.append(second)
        job.logs[second.pid] = (tmp_path / "job2.out", tmp_path / "job2.out")
        assert job.wait(second, 240) == 0, job.stderr(second)[-3000:]
    finally:
        job.kill_all()
    log = job.stderr(first)
    assert "signal USR1: checkpoint and requeue" in log and "Traceback" not in log
    assert "preempted at step" in log and "did not stop within" not in log  # each task saved and stopped
    assert "Traceback" not in job.stderr(second)
    check_continued(metrics, at_requeue, saved, list(range(16)))
    assert checkpoint_step(run_dir) == 16
    assert [p.name for p in (tmp_path / "runs" / "tiny").iterdir()] == ["slurm-4242"]
