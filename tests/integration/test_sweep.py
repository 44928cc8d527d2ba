"""Sweeps end to end: an unknown CLI key fails before any trial; an Optuna sweep killed and restarted finishes its trials once each."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.cli import run_main
from tests.helpers.ops import CLI, cli_env, logged_steps, run_cli, train_rows, write_tiny_config

GOOD = """\
method: random
metric: {{name: val/elbo, goal: maximize}}
command:
  - lightning-gen
  - fit
  - --config
  - {config}
  - ${{args}}
parameters:
  model.init_args.optimizer.init_args.lr: {{distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-2}}
  model.init_args.latent_dim: {{values: [2, 4]}}
"""


@pytest.mark.slow
def test_sweep_with_unknown_cli_key_fails_before_any_trial(tmp_path: Path) -> None:
    config = write_tiny_config(tmp_path, epochs=1, wandb="disabled")
    (tmp_path / "s.yaml").write_text(
        GOOD.format(config=config).replace("model.init_args.latent_dim", "model.init_args.latent_dims")
    )
    proc = run_main(["sweep", "s.yaml", "--backend", "optuna", "--trials", "1"], tmp_path)
    assert proc.returncode == 1 and "the trial command is rejected by the CLI" in proc.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_optuna_sweep_killed_and_restarted_finishes_planned_trials_once(tmp_path: Path) -> None:
    import optuna
    from optuna.trial import TrialState

    config = write_tiny_config(tmp_path, epochs=2, wandb="disabled")
    (tmp_path / "s.yaml").write_text(GOOD.format(config=config))
    args = ["sweep", "s.yaml", "--backend", "optuna", "--trials", "3", "--heartbeat", "1", "--no-check"]
    proc = subprocess.Popen(
        [*CLI, *args], cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    target = tmp_path / "runs" / "s" / "trial-0001" / "metrics.csv"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if target.is_file() and any(s >= 3 for s in logged_steps(train_rows(target))):
            break
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)  # the sweep dies; its running trial gets SIGTERM (checkpoint, exit)
    proc.wait()
    time.sleep(4)  # > 2 heartbeats: the trial is stale
    restarted = run_cli(args, tmp_path, timeout=600)
    assert restarted.returncode == 0, restarted.stderr[-3000:]

    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'runs' / 'sweeps' / 's.db'}")
    trials = study.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3
    run_ids = [t.user_attrs["run_id"] for t in complete]
    assert len(set(run_ids)) == 3 and "trial-0001" in run_ids  # no duplicated trial; the retry keeps its run
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 3  # the restart did not replay suggestions
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [1]  # the killed one, retried (resumed) under its own run id
    retry = next(t for t in complete if t.user_attrs["run_id"] == "trial-0001")
    assert retry.params == failed[0].params and "--ckpt_path=last" in retry.user_attrs["command"]
    steps = logged_steps(train_rows(target))
    assert steps == sorted(set(steps)) and max(steps) == 15
    compare = run_main(["compare", "--sweep", "s", "--plot", "cmp.png"], tmp_path)
    assert compare.returncode == 0, compare.stderr[-2000:]
    assert all(f"s/{run_id}" in compare.stdout for run_id in run_ids)
    assert (tmp_path / "cmp.png").stat().st_size > 10_000


@pytest.mark.slow
def test_trials_running_at_once_get_disjoint_devices_and_every_device_is_used(tmp_path: Path) -> None:
    """4 trials, 2 at a time, 2 of the sweep's 4 declared CUDA devices each (the trials train on the CPU)."""
    import optuna

    config = write_tiny_config(tmp_path, epochs=1, wandb="disabled")
    (tmp_path / "s.yaml").write_text(GOOD.format(config=config))
    env = {**cli_env(), "CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    args = ["sweep", "s.yaml", "--backend", "optuna", "--trials", "4", "--workers", "2", "--devices-per-trial", "2"]
    proc = run_cli([*args, "--", "--trainer.accelerator=cpu"], tmp_path, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]

    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'runs' / 'sweeps' / 's.db'}")
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    seen = {}
    for t in trials:  # what the trial's own process saw, from its run dir
        (line,) = (Path(t.user_attrs["run_dir"]) / "devices.jsonl").read_text().splitlines()
        record = json.loads(line)
        seen[t.number] = set(record["CUDA_VISIBLE_DEVICES"].split(","))
        assert record["CUDA_VISIBLE_DEVICES"] == t.user_attrs["devices"] and len(seen[t.number]) == 2
    overlapping = [
        (a, b)
        for a in trials
        for b in trials
        if a.number < b.number and a.datetime_start < b.datetime_complete and b.datetime_start < a.datetime_complete
    ]
    assert overlapping, "no two trials ran at once"
    assert all(not seen[a.number] & seen[b.number] for a, b in overlapping)
    assert set().union(*seen.values()) == {"0", "1", "2", "3"}
    compare = run_main(["compare", "--sweep", "s"], tmp_path)
    assert compare.returncode == 0 and "devices" in compare.stdout and "CUDA 0,1" in compare.stdout
