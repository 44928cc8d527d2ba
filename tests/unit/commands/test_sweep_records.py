"""Sweep records: a grid stops when exhausted and a rerun repeats no point; a typo in a sweep key names the key.

The grid sweeps run a fake trial command (a few lines of Python that report ``--x`` as the metric to the
Optuna trial, as ``lightning-gen fit`` would), so a trial costs one small interpreter, not a training run.
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from lightning_gen.commands import sweep
from lightning_gen.sweeps import optuna_backend
from lightning_gen.sweeps import trial as sweep_trial

FAKE_TRIAL = """\
import json, os, sys, time
from pathlib import Path

import optuna

here = Path(__file__).parent
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
with open(here / "trials.log", "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if (here / f"fail-{args['x']}").exists():
    sys.exit(3)
if (here / f"hang-{args['x']}").exists() and "--ckpt_path=last" not in sys.argv:
    (here / f"started-{args['x']}").touch()
    time.sleep(120)  # until the sweep dies: SIGTERM (PR_SET_PDEATHSIG)
info = json.loads(os.environ["LIGHTNING_GEN_OPTUNA_TRIAL"])
study = optuna.load_study(study_name=info["study"], storage=info["storage"])
optuna.trial.Trial(study, info["trial_id"]).set_user_attr("last_value", float(args["x"]))
"""


def _grid(folder: Path, values: list[int], name: str = "g") -> Path:
    """A ``method: grid`` sweep over ``x`` whose trial is the fake command above."""
    (folder / "fake_trial.py").write_text(FAKE_TRIAL)
    command = [sys.executable, str(folder / "fake_trial.py"), "${args}"]
    path = folder / f"{name}.yaml"
    path.write_text(
        json.dumps(
            {
                "method": "grid",
                "metric": {"name": "val/elbo", "goal": "maximize"},
                "command": command,
                "parameters": {"x": {"values": values}, "y": {"value": "const"}},
            }
        )
    )
    return path


def _trials(folder: Path, name: str = "g") -> list:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(
        study_name=name, storage=f"sqlite:///{folder / 'runs' / 'sweeps' / f'{name}.db'}"
    ).get_trials()


def _started(folder: Path) -> list[list[str]]:
    """The argument lists of every trial process the sweeps started."""
    log = folder / "trials.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


def _sweep(folder: Path, path: Path, trials: int | None, capsys: pytest.CaptureFixture) -> str:
    """``lightning-gen sweep`` in this process; what it printed."""
    argv = [str(path), "--backend", "optuna", "--no_check", "--root", str(folder / "runs")]
    sweep.main(argv + ([] if trials is None else ["--trials", str(trials)]))
    return capsys.readouterr().out


def test_grid_stops_when_exhausted_and_a_rerun_starts_no_trial(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _grid(tmp_path, [1, 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = _sweep(tmp_path, path, 5, capsys)
    assert not [w for w in caught if w.category.__name__ == "ExperimentalWarning"]
    assert out.count("sweep g: --trials 5 is more than the 2 points of the grid (0 done)") == 1
    assert "sweep g: the grid is exhausted: all 2 points are done (0 of them before this run); stopping." in out
    first = _trials(tmp_path)
    assert [(t.state.name, t.params["x"]) for t in first] == [("COMPLETE", 1), ("COMPLETE", 2)]
    assert len(_started(tmp_path)) == 2

    for _ in range(2):  # each rerun: no trial, no process, exit 0
        out = _sweep(tmp_path, path, 5, capsys)
        assert out.startswith(
            "sweep g: the grid is complete: all 2 points are done, so no trial was started. "
            "For more trials add values to the sweep file, or give it a new `name`.\n"
        )
        assert "is more than" not in out and "sweep g: 2 complete, 0 pruned" in out
        assert len(_trials(tmp_path)) == 2 and len(_started(tmp_path)) == 2


def test_grid_continued_with_more_trials_runs_only_the_points_not_done(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = _grid(tmp_path, [1, 2, 3])
    out = _sweep(tmp_path, path, 1, capsys)
    assert "grid" not in out.split("sweep g: 1 complete")[0]  # within --trials: nothing to say
    assert [t.params["x"] for t in _trials(tmp_path)] == [1]
    out = _sweep(tmp_path, path, None, capsys)  # a grid's default --trials: its points
    assert "is more than" not in out
    assert "the grid is exhausted: all 3 points are done (1 of them before this run)" in out
    assert sorted(t.params["x"] for t in _trials(tmp_path)) == [1, 2, 3]
    assert all(t.state.name == "COMPLETE" for t in _trials(tmp_path)) and len(_started(tmp_path)) == 3


def test_failed_grid_point_is_said_and_run_again_by_a_rerun(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _grid(tmp_path, [1, 2])
    (tmp_path / "fail-2").touch()
    out = _sweep(tmp_path, path, 2, capsys)
    assert (
        "sweep g: 1 of the 2 grid points are done; the others failed or are running elsewhere: "
        "run the command again to run them." in out
    )
    assert [(t.state.name, t.params["x"]) for t in _trials(tmp_path)] == [("COMPLETE", 1), ("FAIL", 2)]
    (tmp_path / "fail-2").unlink()
    out = _sweep(tmp_path, path, 2, capsys)
    assert "the grid is exhausted: all 2 points are done (1 of them before this run)" in out
    states = [(t.state.name, t.params["x"]) for t in _trials(tmp_path)]
    assert states == [("COMPLETE", 1), ("FAIL", 2), ("COMPLETE", 2)]  # x=1 not repeated
    assert [a[0] for a in _started(tmp_path)] == ["--x=1", "--x=2", "--x=2"]


@pytest.mark.slow  # a sweep killed mid-trial, ~6 s
def test_killed_grid_sweep_resumes_its_running_trial_and_then_is_complete(tmp_path: Path) -> None:
    path = _grid(tmp_path, [1, 2])
    (tmp_path / "hang-2").touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTNING_GEN_")}
    cmd = [sys.executable, "-m", "lightning_gen", "sweep", str(path), "--backend", "optuna", "--trials", "5"]
    cmd += ["--no_check", "--heartbeat", "1", "--root", str(tmp_path / "runs")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (tmp_path / "started-2").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert (tmp_path / "started-2").exists()
    os.kill(proc.pid, signal.SIGKILL)  # the sweep dies; its trial gets SIGTERM
    proc.wait()
    time.sleep(3)  # > 2 heartbeats: the running trial is stale

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "ExperimentalWarning" not in rerun.stderr
    assert "sweep g: --trials 5 is more than the 2 points of the grid (1 done)" in rerun.stdout
    assert "the grid is exhausted: all 2 points are done (1 of them before this run)" in rerun.stdout
    trials = _trials(tmp_path)
    assert [(t.number, t.state.name, t.params["x"]) for t in trials] == [
        (0, "COMPLETE", 1),
        (1, "FAIL", 2),  # the killed one ...
        (2, "COMPLETE", 2),  # ... re-run under its own run id, resuming its last.ckpt
    ]
    assert trials[2].user_attrs["run_id"] == "trial-0001" and "--ckpt_path=last" in trials[2].user_attrs["command"]

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "the grid is complete: all 2 points are done" in again.stdout
    assert len(_trials(tmp_path)) == 3 and len(_started(tmp_path)) == 3


def test_quiet_experimental_silences_only_optunas_experimental_warnings() -> None:
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with optuna_backend._quiet_experimental():
            warnings.warn("experimental", ExperimentalWarning, stacklevel=1)
            warnings.warn("other", UserWarning, stacklevel=1)
    assert [(w.category, str(w.message)) for w in caught] == [(UserWarning, "other")]


def _signature(class_path: str) -> list[str]:
    """The parameter names of a class (of this torch version: Adam and SGD gain some now and then)."""
    from lightning_gen.utils.imports import import_object

    return list(inspect.signature(import_object(class_path)).parameters)


CONFIG = {
    "seed_everything": 0,
    "trainer": {"max_epochs": 1, "logger": None},
    "model": {
        "class_path": "lightning_gen.models.VAE",
        "init_args": {
            "latent_dim": 4,
            "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.003, "betas": [0.9, 0.999]}},
        },
    },
}


@pytest.mark.parametrize(
    ("key", "values", "reason"),
    [
        ("model.init_args.latent_dim", {}, None),
        ("model.init_args.optimizer.init_args.lr", {}, None),
        ("model.init_args.optimizer.class_path", {}, None),
        ("trainer.logger.init_args.project", {}, None),  # below a null: cannot be told
        (
            "model.init_args.optimizer.init_args.lrr",
            {},
            "`lrr` is not a parameter of torch.optim.Adam (it takes: lr, betas). Did you mean `lr`?",
        ),
        (
            "model.init_args.optimizer.init_args.betas",
            {"model.init_args.optimizer.class_path": "torch.optim.SGD"},  # the sweep picks the class
            f"`betas` is not a parameter of torch.optim.SGD (it takes: {', '.join(_signature('torch.optim.SGD'))}).",
        ),
        (
            "trainer.max_epoch",
            {},
            "`max_epoch` is not a key of `trainer` (it takes: max_epochs, logger). Did you mean `max_epochs`?",
        ),
        (
            "sed_everything",
            {},
            "`sed_everything` is not a top-level key (it takes: seed_everything, trainer, model). "
            "Did you mean `seed_everything`?",
        ),
    ],
)
def test_unknown_key_names_the_class_or_mapping_and_what_it_takes(key: str, values: dict, reason: str | None) -> None:
    assert sweep_trial.unknown_key(key, CONFIG, values) == reason


TINY = """\
model:
  class_path: lightning_gen.models.VAE
  init_args:
    latent_dim: 4
    widths: [8, 16]
    optimizer:
      class_path: torch.optim.Adam
      init_args:
        lr: 3.0e-3
data:
  class_path: datamodules.SyntheticImageDataModule
  init_args: {image_shape: [1, 16, 16], num_train: 64, num_val: 32, batch_size: 32}
trainer: {max_epochs: 1, accelerator: cpu}
run: {root: runs, wandb: disabled}
"""


def test_sweep_key_typo_is_refused_naming_the_key_and_the_parameters(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real CLI's dry run refuses the trial command; the reason is the key, not jsonargparse's last Union branch."""
    from lightning_gen.__main__ import main

    for name in [k for k in os.environ if k.startswith("LIGHTNING_GEN_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(TINY)
    (tmp_path / "typo.yaml").write_text(
        "method: random\nmetric: {name: val/elbo, goal: maximize}\n"
        'command: [lightning-gen, fit, --config, tiny.yaml, "${args}"]\n'
        "parameters:\n"
        "  model.init_args.optimizer.init_args.lrr: {distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-2}\n"
        "  model.init_args.latent_dim: {values: [2, 4]}\n"
    )
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "typo.yaml", "--backend", "optuna", "--trials", "1"])
    assert exc.value.code == 1
    adam = [n for n in _signature("torch.optim.Adam") if n != "params"]  # the CLI sets all but params
    assert adam[:4] == ["lr", "betas", "eps", "weight_decay"]
    assert capsys.readouterr().err.strip() == (
        "lightning-gen: error: Sweep typo: the trial command is rejected by the CLI: sweep parameter "
        f"`model.init_args.optimizer.init_args.lrr`: `lrr` is not a parameter of torch.optim.Adam (it takes: {', '.join(adam)}). "
        "Did you mean `lr`? Fix the key in the sweep file. Nothing was run."
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml", "typo.yaml"]  # no study, no run
