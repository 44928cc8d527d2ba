"""The Ray backend's pieces without a cluster: W&B search space as Tune's, ASHA from hyperband, metrics.csv rows."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from lightning_gen.sweeps import ray_backend
from lightning_gen.sweeps.spec import load_sweep
from tests.helpers.cli import run_main
from tests.helpers.ops import cli_env

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs ray[tune] (the ray extra)")

SWEEP = """\
method: {method}
metric: {{name: val/elbo, goal: maximize}}
command: [lightning-gen, fit, "${{args}}"]
parameters:
  lr: {{distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-2}}
  width: {{min: 1, max: 3}}
  drop: {{distribution: q_uniform, min: 0.0, max: 1.0, q: 0.25}}
  latent: {{values: [2, 4, 8]}}
  seed: {{value: 7}}
{early}"""


def _spec(tmp_path: Path, method: str = "random", early: str = "") -> ray_backend.SweepSpec:
    (tmp_path / "s.yaml").write_text(SWEEP.format(method=method, early=early))
    return load_sweep(tmp_path / "s.yaml")


def test_wandb_distributions_become_tune_domains_with_the_same_bounds(tmp_path: Path) -> None:
    space, search, samples = ray_backend._search(_spec(tmp_path), trials=5, seed=0)
    assert samples == 5 and type(search).__name__ == "BasicVariantGenerator" and space["seed"] == 7
    draws = {key: [space[key].sample() for _ in range(400)] for key in ("lr", "width", "drop", "latent")}
    assert all(1e-4 <= v <= 1e-2 for v in draws["lr"])
    assert set(draws["width"]) == {1, 2, 3}  # W&B's max is included
    assert set(draws["drop"]) <= {0.0, 0.25, 0.5, 0.75, 1.0} and len(set(draws["drop"])) >= 4
    assert set(draws["latent"]) == {2, 4, 8}


def test_bayes_is_optunas_sampler_and_a_grid_runs_each_point_once_up_to_trials(tmp_path: Path) -> None:
    _, search, samples = ray_backend._search(_spec(tmp_path, "bayes"), trials=4, seed=0)
    assert type(search).__name__ == "OptunaSearch" and samples == 4
    (tmp_path / "g.yaml").write_text(
        'method: grid\nmetric: {name: m}\ncommand: [x, "${args}"]\nparameters: {a: {values: [1, 2]}, b: {values: [x, y]}}\n'
    )
    _, search, samples = ray_backend._search(load_sweep(tmp_path / "g.yaml"), trials=3, seed=0)
    assert samples == 3 and search._points_to_evaluate == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}]


def test_hyperband_is_asha_and_only_a_stop_before_the_end_counts_as_early(tmp_path: Path) -> None:
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    assert ray_backend._scheduler(_spec(tmp_path)) is None
    asha = ray_backend._scheduler(
        _spec(tmp_path, early="early_terminate: {type: hyperband, min_iter: 1, max_iter: 2, eta: 2}")
    )
    asha.set_search_properties("val/elbo", "max")
    good, bad, last = (Trial("t", stub=True, trial_id=i) for i in ("good", "bad", "last"))
    for t in (good, bad, last):
        asha.on_trial_add(None, t)
    at = lambda it, v: {"training_iteration": it, "val/elbo": v}  # noqa: E731
    assert asha.on_trial_result(None, good, at(1, -100.0)) == TrialScheduler.CONTINUE  # first at the rung
    assert asha.on_trial_result(None, bad, at(1, -300.0)) == TrialScheduler.STOP  # below its cutoff
    assert asha.on_trial_result(None, good, at(2, -90.0)) == TrialScheduler.STOP  # max_iter reached: its end
    assert asha.stopped == {"bad"}


def test_metric_rows_skip_other_rows_old_steps_non_finite_values_and_a_cut_last_line(tmp_path: Path) -> None:
    csv = tmp_path / "metrics.csv"
    csv.write_text("epoch,step,train/loss,val/elbo\n0,3,1.5,\n0,7,,-120.5\n1,15,,nan\n1,23,,-110.25\n2,31,,-100")
    assert ray_backend.metric_rows(csv, "val/elbo", after_step=-1) == [(7, -120.5), (23, -110.25)]
    assert ray_backend.metric_rows(csv, "val/elbo", after_step=7) == [(23, -110.25)]
    assert ray_backend.metric_rows(tmp_path / "none.csv", "val/elbo", after_step=-1) == []


def test_trial_run_ids_continue_after_the_runs_already_there(tmp_path: Path) -> None:
    for name in ("trial-0000", "trial-0004", "other"):
        (tmp_path / name).mkdir()
    name = ray_backend._trial_names(ray_backend._first_free_number(tmp_path))
    assert [name(None), name(None)] == ["trial-0005", "trial-0006"]


def test_ray_options_with_another_backend_are_refused_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(SWEEP.format(method="random", early=""))
    proc = run_main(["sweep", "s.yaml", "--backend", "optuna", "--gpus-per-trial", "2"], tmp_path, env=cli_env())
    assert proc.returncode == 1 and "`--gpus-per-trial` place trials on a Ray cluster" in proc.stderr
    assert "add `--backend ray`" in proc.stderr
