"""Sweep files are checked up front: a good file maps to CLI arguments, a bad one is one clear error and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from gen_common.errors import ConfigError
from lightning_gen.sweeps.spec import load_sweep
from lightning_gen.sweeps.trial import trial_command

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


def test_sweep_file_maps_to_cli_arguments(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(GOOD.format(config="tiny.yaml"))
    spec = load_sweep(path)
    assert spec.name == "s" and spec.direction == "maximize" and spec.metric == "val/elbo"
    cmd = trial_command(spec, {"model.init_args.latent_dim": 4}, ["--run.id=x"])
    assert cmd[-5:] == ["fit", "--config", "tiny.yaml", "--model.init_args.latent_dim=4", "--run.id=x"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("method: bayes\nparameters: [1, 2\n", "not valid YAML"),
        (GOOD.replace("method: random", "method: genetic"), "`method` must be one of"),
        (
            GOOD.replace("metric: {{name: val/elbo, goal: maximize}}", "metric: {{goal: maximize}}"),
            "`metric.name` is required",
        ),
        (GOOD.replace("log_uniform_values, min: 1.0e-4", "log_uniform_values, min: 0"), "need 0 < min < max"),
        (
            GOOD.replace("distribution: log_uniform_values", "distribution: beta"),
            "distribution 'beta' is not supported",
        ),
        (GOOD.replace("  - ${{args}}\n", ""), "must be a list containing ${args}"),
    ],
)
def test_bad_sweep_file_is_one_clear_error_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture, text: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text.format(config="tiny.yaml"))
    with pytest.raises(ConfigError, match=message.replace("$", r"\$").replace("(", r"\(")):
        load_sweep(path)
    from lightning_gen.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["sweep", str(path), "--backend", "optuna"])
    assert exc.value.code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("lightning-gen: error: Sweep file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]  # no study, no run
