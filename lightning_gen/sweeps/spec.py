"""A W&B-format sweep file, read and checked: its method, metric and goal, search space and trial command."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gen_common.errors import ConfigError

_METHODS = ("random", "bayes", "grid")
_DISTRIBUTIONS = (
    "categorical",
    "constant",
    "uniform",
    "int_uniform",
    "log_uniform_values",
    "q_uniform",
    "q_log_uniform_values",
)


@dataclass
class SweepSpec:
    """A checked W&B sweep config."""

    name: str
    raw: dict[str, Any]
    method: str
    metric: str
    goal: str
    parameters: dict[str, dict[str, Any]]
    command: list[str]
    hyperband_min_iter: int | None

    @property
    def direction(self) -> str:
        return "maximize" if self.goal == "maximize" else "minimize"


def _bad(path: Path, what: str) -> ConfigError:
    return ConfigError(
        f"Sweep file {path}: {what} (W&B sweep format: method, metric {{name, goal}}, parameters, command with ${{args}})."
    )


def load_sweep(path: str | os.PathLike) -> SweepSpec:
    """Read and check a sweep file; every problem is one :class:`ConfigError` naming the key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Sweep file {path} does not exist; see experiments/sweeps/ for examples.")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise _bad(path, f"is not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise _bad(path, "must be a mapping")
    method = raw.get("method", "random")
    if method not in _METHODS:
        raise _bad(path, f"`method` must be one of {_METHODS}, got {method!r}")
    metric = raw.get("metric") or {}
    if not isinstance(metric, dict) or not metric.get("name"):
        raise _bad(path, "`metric.name` is required (a logged metric such as val/elbo)")
    goal = metric.get("goal", "minimize")
    if goal not in ("minimize", "maximize"):
        raise _bad(path, f"`metric.goal` must be 'minimize' or 'maximize', got {goal!r}")
    params = raw.get("parameters")
    if not isinstance(params, dict) or not params:
        raise _bad(path, "`parameters` must map CLI keys to {values: [...]} / {min, max} / {value}")
    for key, p in params.items():
        if not isinstance(p, dict):
            raise _bad(path, f"parameter {key!r} must be a mapping, got {p!r}")
        _distribution(path, key, p)
        if method == "grid" and "values" not in p and "value" not in p:
            raise _bad(path, f"method 'grid' needs `values` for parameter {key!r}")
    command = raw.get("command")
    if not isinstance(command, list) or "${args}" not in command:
        raise _bad(
            path, "`command` must be a list containing ${args}, e.g. [lightning-gen, fit, --config, X.yaml, ${args}]"
        )
    early = raw.get("early_terminate")
    min_iter = None
    if early:
        if not isinstance(early, dict) or early.get("type") != "hyperband":
            raise _bad(path, "`early_terminate.type` must be 'hyperband'")
        min_iter = int(early.get("min_iter", 1))
    return SweepSpec(
        path.stem if not raw.get("name") else str(raw["name"]),
        raw,
        method,
        metric["name"],
        goal,
        params,
        command,
        min_iter,
    )


def _distribution(path: Path, key: str, p: dict[str, Any]) -> str:
    if "values" in p:
        if not isinstance(p["values"], list) or not p["values"]:
            raise _bad(path, f"parameter {key!r}: `values` must be a non-empty list")
        return "categorical"
    if "value" in p:
        return "constant"
    dist = p.get("distribution")
    if dist is None:
        if "min" not in p or "max" not in p:
            raise _bad(path, f"parameter {key!r} needs `values`, `value`, or `min` and `max`")
        dist = "int_uniform" if isinstance(p["min"], int) and isinstance(p["max"], int) else "uniform"
    if dist not in _DISTRIBUTIONS:
        raise _bad(path, f"parameter {key!r}: distribution {dist!r} is not supported; use one of {_DISTRIBUTIONS}")
    if dist not in ("categorical", "constant"):
        try:
            lo, hi = float(p["min"]), float(p["max"])
        except (KeyError, TypeError, ValueError):
            raise _bad(path, f"parameter {key!r}: distribution {dist!r} needs numeric `min` and `max`") from None
        if not lo < hi or ("log" in dist and lo <= 0):
            raise _bad(path, f"parameter {key!r}: need 0 < min < max for log and min < max otherwise, got {lo}, {hi}")
    return dist


def suggest(trial: Any, spec: SweepSpec) -> dict[str, Any]:
    """Ask an Optuna trial for every parameter of the sweep (W&B distributions mapped to Optuna's)."""
    values: dict[str, Any] = {}
    for key, p in spec.parameters.items():
        dist = _distribution(Path(spec.name), key, p)
        if dist == "categorical":
            values[key] = trial.suggest_categorical(key, p["values"])
        elif dist == "constant":
            values[key] = p["value"]
        elif dist == "int_uniform":
            values[key] = trial.suggest_int(key, int(p["min"]), int(p["max"]))
        elif dist in ("uniform", "q_uniform"):
            values[key] = trial.suggest_float(
                key, float(p["min"]), float(p["max"]), step=p.get("q") if dist == "q_uniform" else None
            )
        else:  # log_uniform_values, q_log_uniform_values (q ignored: Optuna has no log+step)
            values[key] = trial.suggest_float(key, float(p["min"]), float(p["max"]), log=True)
    return values


def grid_points(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every point of a ``method: grid`` sweep (its ``values`` parameters), in the file's order."""
    keys = [k for k, p in spec.parameters.items() if "values" in p]
    return [dict(zip(keys, combo)) for combo in itertools.product(*(spec.parameters[k]["values"] for k in keys))]


def first_values(spec: SweepSpec) -> dict[str, Any]:
    out = {}
    for key, p in spec.parameters.items():
        if "values" in p:
            out[key] = p["values"][0]
        elif "value" in p:
            out[key] = p["value"]
        else:
            out[key] = p["min"]
    return out
