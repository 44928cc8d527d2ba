"""Many sweep processes on one study: on a real PostgreSQL server and on an Optuna journal file, both started here.

What users of a cluster run: several ``lightning-gen sweep`` processes (nodes, SLURM array tasks) with one
``--storage``. Exactly ``--trials`` trials complete, no trial runs twice, a killed worker's trial is resumed by
another worker from its ``last.ckpt``, and ``compare --sweep`` and ``optuna-dashboard`` read the study.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lightning_gen.sweeps.storage import open_storage, rdb_url
from tests.helpers.cli import run_main
from tests.helpers.ops import CLI, cli_env, logged_steps, train_rows, write_tiny_config
from tests.helpers.paths import REPO_ROOT
from tests.helpers.postgres import postgres_server
from tests.integration.test_sweep import GOOD


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def _database(server_url: str, name: str) -> str:
    """A fresh database on the test server (one per test: studies of different tests never meet)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(rdb_url(server_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server_url.rsplit("/", 1)[0] + "/" + name


def _sweep_file(tmp_path: Path, epochs: int) -> None:
    config = write_tiny_config(tmp_path, epochs=epochs, wandb="disabled")
    (tmp_path / "s.yaml").write_text(GOOD.format(config=config))


def _worker(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A sweep process in its own process group (killing the group is a node dying), output merged."""
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env or cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _finish(workers: list[subprocess.Popen], timeout: float = 600) -> list[str]:
    outputs = []
    for proc in workers:
        try:
            out, _ = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        outputs.append(out)
    return outputs


def _assert_exactly_once(storage: str, cwd: Path, trials: int) -> list:
    """``trials`` complete trials, each its own run id, number and run dir; every step logged once."""
    import optuna

    study = optuna.load_study(study_name="s", storage=open_storage(storage))
    complete = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert len(complete) == trials, [(t.number, t.state.name) for t in study.get_trials()]
    run_ids = [t.user_attrs["run_id"] for t in complete]
    assert len(set(run_ids)) == trials and len({t.number for t in complete}) == trials
    for run_id in run_ids:
        steps = logged_steps(train_rows(cwd / "runs" / "s" / run_id / "metrics.csv"))
        assert steps == sorted(set(steps)), (run_id, steps)
    return complete


SWEEP = ["sweep", "s.yaml", "--backend", "optuna", "--no-check"]


@pytest.mark.slow  # a real PostgreSQL server, ~25 s; the default suite's sweeps share an SQLite/journal study
def test_two_sweep_processes_on_one_postgresql_study_run_each_trial_once(tmp_path: Path, postgres: str) -> None:
    storage = _database(postgres, "two_workers")
    _sweep_file(tmp_path, epochs=1)
    args = [*CLI, *SWEEP, "--trials", "4", "--storage", storage]
    workers = [_worker(args, tmp_path), _worker(args, tmp_path)]
    outputs = _finish(workers)
    for worker, out in zip(workers, outputs):
        assert worker.returncode == 0 and "sweep s: 4 complete" in out, out[-3000:]
    complete = _assert_exactly_once(storage, tmp_path, 4)

    compare = run_main(["compare", "--sweep", "s", "--storage", storage], tmp_path)
    assert compare.returncode == 0, compare.stderr[-2000:]
    assert all(f"s/{t.user_attrs['run_id']}" in compare.stdout for t in complete)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"optuna-dashboard did not listen on 127.0.0.1:{port}: {proc.communicate()[0][-2000:]}")


@pytest.mark.slow
def test_optuna_dashboard_lists_the_trials_of_a_postgresql_study_in_a_headless_browser(
    tmp_path: Path, postgres: str
) -> None:
    import optuna

    storage = _database(postgres, "dashboard")
    study = optuna.create_study(study_name="s", storage=open_storage(storage), direction="maximize")
    for number in range(3):
        study.enqueue_trial({"lr": 10.0**-number})
        study.optimize(lambda trial: -trial.suggest_float("lr", 1e-4, 1.0, log=True), n_trials=1)
    port = _free_port()
    dashboard = subprocess.Popen(
        [str(Path(sys.executable).parent / "optuna-dashboard"), rdb_url(storage)]
        + ["--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for_port(port, dashboard)
        page = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
            + ["--virtual-time-budget=20000", "--dump-dom", f"http://127.0.0.1:{port}/dashboard/studies/1/trials"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)
    assert page.returncode == 0, page.stderr[-2000:]
    assert "Trial 0" in page.stdout and "Trial 2" in page.stdout, page.stdout[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["postgresql", "journal"])
def test_a_worker_killed_with_kill9_has_its_trial_resumed_by_the_other_from_last_ckpt(
    tmp_path: Path, postgres: str, kind: str
) -> None:
    storage = _database(postgres, "killed_worker") if kind == "postgresql" else f"journal:{tmp_path / 's.journal'}"
    _sweep_file(tmp_path, epochs=2)
    args = [*CLI, *SWEEP, "--trials", "3", "--heartbeat", "1", "--storage", storage]
    first = _worker(args, tmp_path)
    target = tmp_path / "runs" / "s" / "trial-0000" / "metrics.csv"
    deadline = time.time() + 300
    while time.time() < deadline and first.poll() is None:
        if target.is_file() and any(s >= 5 for s in logged_steps(train_rows(target))):
            break
        time.sleep(0.1)
    second = _worker(args, tmp_path)
    os.killpg(first.pid, signal.SIGKILL)  # the node dies: sweep process and trial at once, no checkpoint on exit
    killed_at = max(logged_steps(train_rows(target)))
    _finish([first])
    (out,) = _finish([second])
    assert second.returncode == 0, out[-3000:]

    complete = _assert_exactly_once(storage, tmp_path, 3)
    retry = next(t for t in complete if t.user_attrs["run_id"] == "trial-0000")
    assert retry.number != 0 and "--ckpt_path=last" in retry.user_attrs["command"]
    steps = logged_steps(train_rows(target))
    assert steps == list(range(16))  # each step once: the retry continued from the killed trial's last.ckpt
    assert killed_at >= 5


@pytest.mark.slow
def test_slurm_array_tasks_on_one_journal_file_run_each_trial_once(tmp_path: Path) -> None:
    """The SLURM array script, run as two array tasks (plain bash here), on a shared-filesystem journal."""
    _sweep_file(tmp_path, epochs=1)
    storage = f"journal:{tmp_path / 'runs' / 'sweeps' / 's.journal'}"
    script = str(REPO_ROOT / "scripts" / "sweep_array.sbatch")
    env = cli_env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # `lightning-gen` of this venv
    tasks = [
        _worker(
            ["bash", script, "s.yaml", "--no-check"],
            tmp_path,
            {**env, "STORAGE": storage, "TRIALS": "4", "SLURM_ARRAY_TASK_ID": str(task)},
        )
        for task in range(2)
    ]
    outputs = _finish(tasks)
    assert all(t.returncode == 0 for t in tasks), outputs[0][-3000:] + outputs[1][-3000:]
    _assert_exactly_once(storage, tmp_path, 4)
