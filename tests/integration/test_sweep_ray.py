"""``sweep --backend ray`` on real Ray clusters on loopback: disjoint GPUs per trial, ASHA stops, a dead node's trial resumed.

Ray binds every port on all interfaces unless the only interface is loopback, so everything that starts or joins a
Ray cluster here runs in a network namespace of its own with only ``lo`` up (``unshare -n``): the CLI in a wrapped
subprocess, and the 2-node test re-runs itself in one (the cluster lives in the test process).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import Callback

from tests.helpers.cli import run_main
from tests.helpers.ops import CLI, cli_env, logged_steps, train_rows, write_tiny_config

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs ray[tune] (the ray extra)")

IN_NETNS = "LIGHTNING_GEN_TEST_RAY_NETNS"  # set when this process is the re-run inside the namespace
TRANSCRIPT = "LIGHTNING_GEN_TEST_RAY_TRANSCRIPT"  # copy the node-kill sweep's console output to this file
LOOPBACK = ["unshare", "-n", "bash", "-c", 'ip link set lo up && exec "$@"', "bash"]

# A stand-in for `lightning-gen fit` that costs no training: it answers --print_config, records the devices it was
# given like the fit process does (devices.jsonl), logs its --x as the metric (metrics.csv) and keeps its start, end
# and whether it got SIGTERM. A trial with x >= 5 logs its second row once another trial has started (so they run at
# once). A trial with x < 5 reaches ASHA's first rung only after trial-0000 was recorded there, then waits for a
# second row that comes too late: ASHA must stop it.
FAKE_FIT = """\
import json, os, signal, sys, time
from pathlib import Path

if "--print_config" in sys.argv:
    print("run:\\n  root: runs")
    sys.exit(0)
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
x, run, start = float(args["x"]), Path("runs", args["run.name"], args["run.id"]), time.time()
run.mkdir(parents=True, exist_ok=True)

def end(sigterm):
    (run / "span.json").write_text(json.dumps({"start": start, "end": time.time(), "sigterm": sigterm}))
    sys.exit(0)

signal.signal(signal.SIGTERM, lambda *_: end(True))
record = {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"), "MASTER_PORT": os.environ.get("MASTER_PORT")}
(run / "devices.jsonl").write_text(json.dumps(record) + "\\n")
if x < 5:
    deadline = time.time() + 60
    while not list(Path("runs/sweeps/ray").glob("*/trial-0000/result.json")) and time.time() < deadline:
        time.sleep(0.05)
(run / "metrics.csv").write_text(f"step,val/x\\n1,{x}\\n")
deadline = time.time() + 60
while len(list(run.parent.glob("trial-*/devices.jsonl"))) < 2 and time.time() < deadline:
    time.sleep(0.05)
time.sleep(60 if x < 5 else 0.3)
with open(run / "metrics.csv", "a") as f:
    f.write(f"2,{x}\\n")
end(False)
"""

FAKE_SWEEP = """\
method: grid
metric: {{name: val/x, goal: maximize}}
command: [{python}, fake_fit.py, "${{args}}"]
parameters:
  x: {{values: [8, 1, 9, 2]}}
early_terminate: {{type: hyperband, min_iter: 1, eta: 2}}
"""

TINY_SWEEP = """\
method: random
metric: {{name: val/elbo, goal: maximize}}
command: [lightning-gen, fit, --config, {config}, "${{args}}"]
parameters:
  model.init_args.optimizer.init_args.lr: {{distribution: log_uniform_values, min: 1.0e-3, max: 1.0e-2}}
  model.init_args.latent_dim: {{values: [2, 4]}}
"""


class SlowSteps(Callback):
    """Every training step lasts ``seconds`` more: a trial long enough to be killed mid-way."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, *args: object) -> None:
        time.sleep(self.seconds)


def _loopback_cli(args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """``lightning-gen ARGS`` in a network namespace of its own with only loopback up."""
    return subprocess.run([*LOOPBACK, *CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _devices(run: Path) -> list[set[str]]:
    return [set(json.loads(line)["CUDA_VISIBLE_DEVICES"].split(",")) for line in (run / "devices.jsonl").open()]


@pytest.mark.slow  # a real Ray cluster, ~18 s; the default suite keeps the fast refusals below
def test_ray_sweep_gives_running_trials_disjoint_gpus_and_asha_stops_the_bad_ones(tmp_path: Path) -> None:
    """A local cluster of the sweep's 4 declared GPUs, 2 per trial: 2 of the 4 grid points at once; ASHA stops x=1."""
    (tmp_path / "fake_fit.py").write_text(FAKE_FIT)
    (tmp_path / "s.yaml").write_text(FAKE_SWEEP.format(python=sys.executable))
    env = {**cli_env(), "CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    args = ["sweep", "s.yaml", "--backend", "ray", "--trials", "2", "--gpus-per-trial", "2", "--cpus-per-trial", "0.5"]
    proc = _loopback_cli(args, tmp_path, env, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "sweep s: 2 finished (1 stopped early by ASHA), 0 failed" in proc.stdout

    runs = {p.name: p for p in sorted((tmp_path / "runs" / "s").iterdir())}
    assert list(runs) == ["trial-0000", "trial-0001"]  # the grid's first 2 points, one run each
    span = {name: json.loads((run / "span.json").read_text()) for name, run in runs.items()}
    gpus = {name: _devices(run)[0] for name, run in runs.items()}
    assert all(len(g) == 2 and g <= {"0", "1", "2", "3"} for g in gpus.values())
    overlapping = [
        (a, b)
        for a in runs
        for b in runs
        if a < b and max(span[a]["start"], span[b]["start"]) < min(span[a]["end"], span[b]["end"])
    ]
    assert overlapping == [("trial-0000", "trial-0001")], span  # both ran at once ...
    assert gpus["trial-0000"] | gpus["trial-0001"] == {"0", "1", "2", "3"}, gpus  # ... on disjoint GPU pairs

    stopped = {name for name, s in span.items() if s["sigterm"]}
    assert stopped == {"trial-0001"}  # x = 1, below the first rung's cutoff (x = 8 was there first)
    for name, run in runs.items():  # every logged value reached Tune: the stopped trials' one row, the others' two
        rows = (run / "metrics.csv").read_text().splitlines()[1:]
        assert len(rows) == (1 if name in stopped else 2)
        (result,) = (tmp_path / "runs" / "sweeps" / "ray").glob(f"*/{name}/result.json")
        reports = [json.loads(line) for line in result.read_text().splitlines()]
        assert [(r["step"], r["val/x"]) for r in reports] == [
            (int(s), float(v)) for s, v in (row.split(",") for row in rows)
        ]
        assert span[name]["end"] - span[name]["start"] < 30  # a stopped trial ended at once, not after its 60 s

    compare = run_main(["compare", "--sweep", "s", "--metrics", "val/x"], tmp_path)
    assert compare.returncode == 0 and "CUDA " in compare.stdout, compare.stdout + compare.stderr


def test_ray_sweep_bad_input_fails_fast_with_the_fix(tmp_path: Path) -> None:
    """More GPUs per trial than the sweep sees, and an --address where nothing listens: one paragraph, in seconds."""
    (tmp_path / "fake_fit.py").write_text(FAKE_FIT)
    (tmp_path / "s.yaml").write_text(FAKE_SWEEP.format(python=sys.executable))
    env = {**cli_env(), "CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    start = time.time()
    proc = run_main(["sweep", "s.yaml", "--backend", "ray", "--gpus-per-trial", "8"], tmp_path, env=env)
    assert proc.returncode == 1 and "error:" in proc.stderr and "Traceback" not in proc.stderr
    assert "`--gpus-per-trial 8` needs that many GPUs, but this process sees 4 (CUDA_VISIBLE_DEVICES=0,1,2,3)" in (
        proc.stderr
    )
    assert "join a cluster with `--address HOST:PORT`" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1

    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run_main(["sweep", "s.yaml", "--backend", "ray", "--address", f"127.0.0.1:{port}"], tmp_path, env=env)
    assert proc.returncode == 1 and f"`--address 127.0.0.1:{port}`: no Ray cluster answers there" in proc.stderr
    assert "`ray start --head --port PORT`" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert time.time() - start < 20 and not (tmp_path / "runs").exists()


def _rerun_in_loopback_namespace(test: str, timeout: float) -> None:
    """Run this test again in a network namespace with only loopback up, and fail if it fails there."""
    env = {**os.environ, IN_NETNS: "1"}
    cmd = [*LOOPBACK, sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", f"{__file__}::{test}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


def _stop_node(node: object) -> list[object]:
    """SIGSTOP every process of a Ray node (its raylet and all under it): frozen, none can act on another's death."""
    import psutil

    raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)  # type: ignore[attr-defined]
    tree = [*raylet.children(recursive=True), raylet]
    for p in tree:
        p.send_signal(signal.SIGSTOP)
    return tree


@pytest.mark.slow
def test_ray_sweep_on_two_nodes_resumes_the_trial_of_a_killed_node(tmp_path: Path) -> None:
    """Two loopback nodes of 2 GPUs each (4 declared); 3 trials of 2 GPUs; the worker node dies mid-trial.

    Its trial restarts on the head node under the same run id from its ``last.ckpt`` (saved every 2 steps): only
    the steps since that checkpoint are trained again, its metrics.csv repeats no step, and exactly 3 trials finish.
    """
    if os.environ.get(IN_NETNS) != "1":
        _rerun_in_loopback_namespace("test_ray_sweep_on_two_nodes_resumes_the_trial_of_a_killed_node", timeout=580)
        return
    assert [name for _, name in socket.if_nameindex()] == ["lo"]  # this process: only loopback
    from ray.cluster_utils import Cluster

    health = {"health_check_period_ms": 500, "health_check_timeout_ms": 500, "health_check_failure_threshold": 3}
    os.environ["CUDA_VISIBLE_DEVICES"] = "0,1"  # the head's GPUs; each raylet takes its devices from its environment
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "num_gpus": 2, "include_dashboard": False, "_system_config": health},
    )
    try:
        os.environ["CUDA_VISIBLE_DEVICES"] = "2,3"
        worker = cluster.add_node(num_cpus=2, num_gpus=2)
        cluster.wait_for_nodes(timeout=60)
        config = write_tiny_config(tmp_path, epochs=2, wandb="disabled")  # 16 steps, last.ckpt every 2
        (tmp_path / "s.yaml").write_text(TINY_SWEEP.format(config=config))
        env = {**cli_env(), "CUDA_VISIBLE_DEVICES": ""}  # the sweep's own devices do not matter on a cluster
        slow = json.dumps({"class_path": f"{__name__}.SlowSteps", "init_args": {"seconds": 0.4}})
        base = ["sweep", "s.yaml", "--backend", "ray", "--address", cluster.address, "--cpus-per-trial", "1"]

        too_big = subprocess.run([*CLI, *base, "--gpus-per-trial", "3"], cwd=tmp_path, env=env, text=True, **_PIPES)
        assert too_big.returncode == 1 and "fits on no node of the cluster at" in too_big.stderr, too_big.stderr
        assert "CPU 2 GPU 2; CPU 2 GPU 2" in too_big.stderr and not (tmp_path / "runs" / "s").exists()

        args = [*base, "--gpus-per-trial", "2", "--trials", "3", "--no-check", "--", "--trainer.accelerator=cpu"]
        log = tmp_path / "sweep.log"
        with log.open("a") as out:  # append: the test's own lines go in between
            sweep = subprocess.Popen(
                [*CLI, *args[:-2], "--", f"--trainer.callbacks+={slow}", "--trainer.accelerator=cpu"],
                cwd=tmp_path,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            victim = _wait_for_worker_trial_step(tmp_path / "runs" / "s", sweep, at_step=5, timeout=240)
            frozen = _stop_node(worker)  # the node dies as a machine does: nothing saved on the way out
            killed_at = max(logged_steps(train_rows(victim / "metrics.csv")))
            ckpt_step = _last_ckpt_step(victim)
            for p in frozen:
                p.kill()
            cluster.remove_node(worker, allow_graceful=False)
            with log.open("a") as out:
                print(
                    f"TEST: killed the worker node mid-trial: {victim.name} logged step {killed_at}, its last.ckpt "
                    f"holds {ckpt_step} steps",
                    file=out,
                    flush=True,
                )
            sweep.wait(timeout=300)
        finally:
            if sweep.poll() is None:
                sweep.kill()
                sweep.wait()
            if os.environ.get(TRANSCRIPT):
                Path(os.environ[TRANSCRIPT]).write_text(log.read_text())
        console = log.read_text()
        assert sweep.returncode == 0, console[-5000:]
    finally:
        cluster.shutdown()

    assert "sweep s: 3 finished (0 stopped early by ASHA), 0 failed" in console, console[-3000:]
    runs = sorted((tmp_path / "runs" / "s").iterdir())
    assert [r.name for r in runs] == ["trial-0000", "trial-0001", "trial-0002"]
    for run in runs:  # every trial trained its 16 steps (0..15), each step logged once
        steps = logged_steps(train_rows(run / "metrics.csv"))
        assert steps == list(range(16)), (run.name, steps)
    starts = _devices(victim)
    assert starts == [{"2", "3"}, {"0", "1"}]  # the worker node's GPUs, then the head's, same run dir
    lost = killed_at + 1 - ckpt_step  # steps 0..killed_at were trained; last.ckpt holds ckpt_step of them
    assert ckpt_step > 0 and 0 <= lost <= 2, (killed_at, ckpt_step)  # at most the steps since last.ckpt (every 2)
    assert [p.name for p in (victim / "history").iterdir()] == [f"config-at-step-{ckpt_step}.yaml"]  # resumed there
    assert f"{victim.name}: node " in console and "resumed from last.ckpt" in console
    assert f"Restored all states from the checkpoint at runs/s/{victim.name}/checkpoints/last.ckpt" in console
    first = {r.name: _devices(r)[0] for r in runs}
    assert first["trial-0000"] != first["trial-0001"] and first["trial-0000"] | first["trial-0001"] == set("0123")


_PIPES = {"capture_output": True, "timeout": 120}


def _wait_for_worker_trial_step(root: Path, sweep: subprocess.Popen, at_step: int, timeout: float) -> Path:
    """The run on the worker node (GPUs 2,3), once it logged ``at_step``."""
    deadline = time.time() + timeout
    while time.time() < deadline and sweep.poll() is None:
        for run in root.glob("trial-*"):
            try:
                if _devices(run)[0] != {"2", "3"}:
                    continue
                steps = logged_steps(train_rows(run / "metrics.csv"))
            except (OSError, ValueError, KeyError, IndexError):
                continue
            if steps and max(steps) >= at_step:
                return run
        time.sleep(0.05)
    raise AssertionError(f"no trial on the worker node reached step {at_step} (sweep exit {sweep.poll()})")


def _last_ckpt_step(run: Path) -> int:
    import torch

    return int(torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"])
