"""``lightning-gen sweep FILE``: one W&B-format sweep file, run by W&B agents or by Optuna.

    lightning-gen sweep experiments/sweeps/vae_mnist_lr.yaml --backend optuna --trials 6
    lightning-gen sweep experiments/sweeps/vae_mnist_lr.yaml --backend wandb --trials 6   # online

The file is a W&B sweep config whose parameters are CLI keys
(``model.init_args.optimizer.init_args.lr``) and whose ``command`` runs ``lightning-gen fit``
with ``${args}``; every trial is that command in a subprocess, so all DDP ranks get the same
config from the command line, whichever backend runs it.

Optuna (``--backend optuna``, and ``auto`` when W&B is offline): the study lives in an RDB
storage (SQLite ``<root>/sweeps/<name>.db`` by default, any SQLAlchemy URL for many machines);
restarting the command continues the study until ``--trials`` trials are complete or pruned.
Trials of a killed sweep are found by Optuna's heartbeat, re-queued with the same parameters and
*resumed* from their ``last.ckpt`` (same run id). ``early_terminate: hyperband`` becomes Optuna's
``HyperbandPruner`` on the sweep metric; ``--workers N`` runs N trials at once. ``method: grid`` queues
each point not yet done (complete or pruned) once, so the sweep stops when the grid is exhausted and a
rerun of a done grid starts no trial; a point whose trials all failed is queued again by the next run.
"""

from __future__ import annotations

import ctypes
import difflib
import inspect
import itertools
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from gen_common.errors import ConfigError, LightningGenError
from gen_common.progress import interactive
from lightning_gen.runs import env as run_env
from lightning_gen.utils.imports import import_object
from lightning_gen.utils.options import parse_options

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
_DONE_STATE_NAMES = ("COMPLETE", "PRUNED")  # a trial that counts towards ``--trials``


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


def trial_command(spec: SweepSpec, values: dict[str, Any], extra: list[str]) -> list[str]:
    """The sweep's ``command`` with W&B's macros filled: ``${args}`` -> ``--key=value`` ..."""
    args = [f"--{k}={json.dumps(v) if isinstance(v, (list, dict, bool)) else v}" for k, v in values.items()]
    out: list[str] = []
    for part in spec.command:
        if part == "${args}":
            out += args + extra
        elif part == "${args_no_hyphens}":
            out += [a[2:] for a in args] + extra
        elif part == "${env}":
            continue
        elif part == "${interpreter}":
            out.append(sys.executable)
        elif part == "${program}":
            out.append(str(spec.raw.get("program", "lightning-gen")))
        else:
            out.append(str(part))
    if out and out[0] == "lightning-gen":  # this interpreter's CLI, whatever PATH says
        out[:1] = [sys.executable, "-m", "lightning_gen"]
    return out


def _die_with_parent() -> None:
    """In the trial process: get SIGTERM (-> checkpoint, clean exit) if the sweep process dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def check_command(spec: SweepSpec, values: dict[str, Any], extra: list[str], timeout_s: float = 300.0) -> None:
    """Dry-run the CLI on one trial's arguments (``--print_config``): a bad key fails before any trial."""
    cmd = trial_command(spec, values, extra)
    proc = subprocess.run([*cmd, "--print_config"], capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        unknown = _unknown_parameter(spec, values, extra, timeout_s)
        if unknown:
            raise ConfigError(f"{unknown} Fix the key in the sweep file. Nothing was run.")
        tail = " ".join(proc.stderr.strip().splitlines()[-3:])
        raise ConfigError(
            f"Sweep {spec.name}: the trial command is rejected by the CLI: {tail} (command: {shlex.join(cmd)}). Nothing was run."
        )


def _unknown_parameter(spec: SweepSpec, values: dict[str, Any], extra: list[str], timeout_s: float) -> str | None:
    """The first sweep key that names no option of the trial command, said plainly; ``None`` if none can be told.

    jsonargparse reports a bad key under a ``class_path`` as its last Union branch ("Expected a <class
    'NoneType'>"); instead the command's config without the sweep's values is printed once and every key is
    walked through it, a key under a ``class_path`` checked against that class's signature.
    """
    cmd = [*trial_command(spec, {}, extra), "--print_config"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        config = yaml.safe_load(proc.stdout) if proc.returncode == 0 else None
    except (subprocess.SubprocessError, OSError, yaml.YAMLError):
        return None
    if not isinstance(config, dict):
        return None
    for key in spec.parameters:
        reason = unknown_key(key, config, values)
        if reason:
            return f"Sweep {spec.name}: the trial command is rejected by the CLI: sweep parameter `{key}`: {reason}"
    return None


def unknown_key(key: str, config: dict[str, Any], values: dict[str, Any]) -> str | None:
    """Why dotted ``key`` names nothing in the resolved ``config`` (``--print_config``), or ``None``.

    Under a ``class_path`` the next name (after ``init_args``) must be a parameter of that class, the one the
    sweep's own ``<prefix>.class_path`` value picks if it has one; elsewhere it must be a key of the mapping.
    ``None`` also where it cannot be told: below a null, a list or a class that takes ``**kwargs``.
    """
    parts, node, i = key.split("."), config, 0
    while i < len(parts) and isinstance(node, dict):
        where = ".".join(parts[:i])
        if "class_path" not in node:
            if parts[i] not in node:
                return _not_one_of(parts[i], f"a key of `{where}`" if where else "a top-level key", list(node))
            node, i = node[parts[i]], i + 1
            continue
        j = i + 1 if parts[i] == "init_args" else i
        if parts[i] in ("class_path", "dict_kwargs") or j >= len(parts):
            return None
        class_path = str(values.get(f"{where}.class_path", node["class_path"]))
        printed = node.get("init_args") if class_path == node["class_path"] else None
        names = _init_parameters(class_path, printed if isinstance(printed, dict) else None)
        if names is not None and parts[j] not in names:
            return _not_one_of(parts[j], f"a parameter of {class_path}", names)
        node, i = (printed or {}).get(parts[j]) if isinstance(printed, dict) else None, j + 1
    return None


def _init_parameters(class_path: str, printed: dict[str, Any] | None) -> list[str] | None:
    """The parameters the CLI sets on ``class_path``: its signature's, those printed first (an optimizer's
    ``params`` are the model's to give); ``None`` if it does not import or takes ``**kwargs`` with none printed."""
    try:
        params = inspect.signature(import_object(class_path, "class")).parameters.values()
    except (ConfigError, TypeError, ValueError):
        return None
    names = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if printed is None:
        return None if any(p.kind == p.VAR_KEYWORD for p in params) else names
    return [n for n in names if n in printed] + [n for n in printed if n not in names]


def _not_one_of(name: str, what: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean `{close[0]}`?" if close else ""
    return f"`{name}` is not {what} (it takes: {', '.join(names)}).{hint}"


def _first_values(spec: SweepSpec) -> dict[str, Any]:
    out = {}
    for key, p in spec.parameters.items():
        if "values" in p:
            out[key] = p["values"][0]
        elif "value" in p:
            out[key] = p["value"]
        else:
            out[key] = p["min"]
    return out


def run_optuna(
    spec: SweepSpec, trials: int, storage: str, workers: int, heartbeat_s: int, seed: int, extra: list[str]
) -> Any:
    """Run (or continue) the study until ``trials`` trials are complete or pruned (a grid: or every point done)."""
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    with _quiet_experimental():  # heartbeats and retries are Optuna's experimental API: 4 warnings a sweep
        rdb = _optuna_storage(storage, heartbeat_s)
        try:  # a restarted sweep must not replay the seeded sampler's first suggestions
            seed += len(optuna.load_study(study_name=spec.name, storage=rdb).get_trials(deepcopy=False))
        except KeyError:
            pass
        study = optuna.create_study(
            study_name=spec.name,
            storage=rdb,
            sampler=_optuna_sampler(spec, seed),
            pruner=_optuna_pruner(spec),
            direction=spec.direction,
            load_if_exists=True,
        )
        optuna.storages.fail_stale_trials(study)  # a killed sweep's trials: failed, then re-queued by the callback
        done = len(_done_trials(study))
        grid = _plan_grid(study, spec, trials) if spec.method == "grid" else None
        if done < trials and (grid is None or grid.to_run > 0):
            with _SweepProgress(trials if grid is None else done + grid.to_run, done) as progress:
                study.optimize(
                    lambda trial: _run_trial(trial, study, spec, storage, extra),
                    n_trials=None if grid is None else grid.to_run,
                    n_jobs=workers,
                    catch=(LightningGenError,),
                    callbacks=[
                        MaxTrialsCallback(trials, states=(TrialState.COMPLETE, TrialState.PRUNED)),
                        progress.on_trial_end,
                    ],
                    gc_after_trial=False,
                )
        if grid is not None and not grid.complete:
            _report_grid(study, spec, trials, grid)
    return study


@contextmanager
def _quiet_experimental() -> Iterator[None]:
    """Silence Optuna's ``ExperimentalWarning`` (and only that) in the block, trial threads included."""
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ExperimentalWarning)
        yield


def _done_trials(study: Any) -> list[Any]:
    return [t for t in study.get_trials(deepcopy=False) if t.state.name in _DONE_STATE_NAMES]


def grid_points(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every point of a ``method: grid`` sweep (its ``values`` parameters), in the file's order."""
    keys = [k for k, p in spec.parameters.items() if "values" in p]
    return [dict(zip(keys, combo)) for combo in itertools.product(*(spec.parameters[k]["values"] for k in keys))]


def _point_key(params: dict[str, Any], keys: list[str]) -> str:
    """A grid point as a comparable key: its values of the grid's parameters (``true`` and ``1`` differ)."""
    return json.dumps([params.get(k, "<unset>") for k in keys])


def _trial_point(trial: Any, keys: list[str]) -> str:
    """The key of a trial's grid point (a queued trial has only ``fixed_params`` yet)."""
    return _point_key({**trial.system_attrs.get("fixed_params", {}), **trial.params}, keys)


@dataclass
class _GridPlan:
    points: int  # in the grid
    done_before: int  # points with a complete or pruned trial when the sweep started
    to_run: int  # trials this run starts (queued points, a killed trial's retry included)
    complete: bool  # every point was done already: nothing runs


def _plan_grid(study: Any, spec: SweepSpec, trials: int) -> _GridPlan:
    """Queue the grid points this run evaluates, each once; say up front if the grid is complete or smaller than ``--trials``.

    A point is done when a trial of it completed or was pruned. A point already queued (a killed trial's retry, or
    queued by an earlier run) or running is not queued again, so a rerun never repeats a point; a point whose
    trials all failed is queued again. Grid trials are queued with their values, so the sampler is never asked.
    """
    points = grid_points(spec)
    keys = list(points[0])
    by_state: dict[str, set[str]] = {"DONE": set(), "WAITING": set(), "RUNNING": set()}
    for t in study.get_trials(deepcopy=False):
        state = "DONE" if t.state.name in _DONE_STATE_NAMES else t.state.name
        by_state.setdefault(state, set()).add(_trial_point(t, keys))
    todo = [p for p in points if _point_key(p, keys) not in by_state["DONE"]]
    plan = _GridPlan(len(points), len(points) - len(todo), 0, not todo)
    if plan.complete:
        print(
            f"sweep {spec.name}: the grid is complete: all {plan.points} points are done, so no trial was started. "
            "For more trials add values to the sweep file, or give it a new `name`."
        )
        return plan
    if trials > plan.points:
        print(
            f"sweep {spec.name}: --trials {trials} is more than the {plan.points} points of the grid "
            f"({plan.done_before} done); the sweep stops when every point is done."
        )
    budget = trials - len(_done_trials(study))
    waiting = [t for t in study.get_trials(deepcopy=False) if t.state.name == "WAITING"]
    fresh = [p for p in todo if _point_key(p, keys) not in by_state["WAITING"] | by_state["RUNNING"]]
    for p in fresh[: max(0, budget - len(waiting))]:
        study.enqueue_trial(p)
    plan.to_run = max(0, min(budget, len(waiting) + len(fresh)))
    return plan


def _report_grid(study: Any, spec: SweepSpec, trials: int, plan: _GridPlan) -> None:
    """One line when this run exhausted the grid, or left points undone while ``--trials`` allowed more."""
    points = grid_points(spec)
    done_points = {_trial_point(t, list(points[0])) for t in _done_trials(study)}
    done = sum(_point_key(p, list(points[0])) in done_points for p in points)
    if done == len(points):
        print(
            f"sweep {spec.name}: the grid is exhausted: all {plan.points} points are done "
            f"({plan.done_before} of them before this run); stopping."
        )
    elif len(_done_trials(study)) < trials:
        print(
            f"sweep {spec.name}: {done} of the {plan.points} grid points are done; the others failed or are running "
            "elsewhere: run the command again to run them."
        )


def _optuna_storage(storage: str, heartbeat_s: int) -> Any:
    """The RDB storage with heartbeats: a trial silent for two beats is failed and re-queued (up to 3 times)."""
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    return RDBStorage(
        storage,
        heartbeat_interval=heartbeat_s,
        grace_period=2 * heartbeat_s,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
    )


def _optuna_sampler(spec: SweepSpec, seed: int) -> Any:
    """The sweep ``method`` as an Optuna sampler: random, bayes (TPE); a grid queues its points instead."""
    import optuna

    samplers = {
        "random": optuna.samplers.RandomSampler,
        "bayes": optuna.samplers.TPESampler,
        "grid": optuna.samplers.RandomSampler,  # never asked: every grid trial is queued with its point (_plan_grid)
    }
    return samplers[spec.method](seed=seed)


def _optuna_pruner(spec: SweepSpec) -> Any:
    """``early_terminate: hyperband`` as Optuna's ``HyperbandPruner``; no pruning otherwise."""
    import optuna

    if spec.hyperband_min_iter is not None:
        return optuna.pruners.HyperbandPruner(min_resource=spec.hyperband_min_iter)
    return optuna.pruners.NopPruner()


def _run_trial(trial: Any, study: Any, spec: SweepSpec, storage: str, extra: list[str]) -> float:
    """One trial: ``lightning-gen fit`` in a subprocess, which reports the sweep metric to the study; its last value.

    A re-queued trial (its process was killed) keeps the original's number and run id and resumes its ``last.ckpt``.
    """
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    frozen = study._storage.get_trial(trial._trial_id)
    original = RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
    number = trial.number if original is None else original
    run_id = f"trial-{number:04d}"
    cmd = trial_command(spec, suggest(trial, spec), _trial_run_args(spec, run_id, original is not None) + extra)
    env = dict(os.environ)
    env[run_env.OPTUNA_TRIAL] = json.dumps(
        {"storage": storage, "study": spec.name, "trial_id": trial._trial_id, "metric": spec.metric}
    )
    env.pop(run_env.RUN_ID, None)
    trial.set_user_attr("run_id", run_id)
    trial.set_user_attr("command", shlex.join(cmd))
    proc = subprocess.run(cmd, env=env, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    if proc.returncode != 0:
        raise LightningGenError(f"trial {number} ({run_id}) exited with status {proc.returncode}")
    attrs = study._storage.get_trial(trial._trial_id).user_attrs
    if attrs.get("pruned"):
        raise optuna.TrialPruned()
    if "last_value" not in attrs or not math.isfinite(attrs["last_value"]):
        raise LightningGenError(
            f"trial {number} ({run_id}) logged no {spec.metric}; is it a validation metric of this model?"
        )
    return float(attrs["last_value"])


def _trial_run_args(spec: SweepSpec, run_id: str, resumed: bool) -> list[str]:
    """The ``--run.*`` flags of a trial: its name, id, group and tag; a resumed one continues its run's ``last.ckpt``."""
    run_args = [
        f"--run.name={spec.name}",
        f"--run.id={run_id}",
        f"--run.group=sweep-{spec.name}",
        f"--run.tags=[sweep:{spec.name}]",
    ]
    if resumed:  # continue the interrupted trial's run, once its process has saved and exited
        run_args += ["--ckpt_path=last", "--run.lock_wait_s=120"]
    return run_args


class _SweepProgress:
    """A rich bar of finished trials in an interactive terminal (none in CI or pipes)."""

    def __init__(self, trials: int, done: int) -> None:
        self.trials, self.done, self._progress, self._task = trials, done, None, None

    def __enter__(self) -> _SweepProgress:
        if interactive():
            from rich.progress import Progress

            self._progress = Progress(transient=False)
            self._progress.start()
            self._task = self._progress.add_task("sweep trials", total=self.trials, completed=self.done)
        return self

    def on_trial_end(self, study: Any, trial: Any) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def run_wandb(spec: SweepSpec, trials: int, sweep_id: str | None, project: str, entity: str | None) -> str:
    """Create (or attach to) the W&B sweep and run one agent for ``trials`` runs; returns the sweep id."""
    import wandb

    if sweep_id is None:
        config = dict(spec.raw)
        config.setdefault("name", spec.name)
        sweep_id = wandb.sweep(sweep=config, project=project, entity=entity)
    path = "/".join(p for p in (entity, project, sweep_id) if p)
    subprocess.run([sys.executable, "-m", "wandb", "agent", "--count", str(trials), path], check=True)
    return sweep_id


@dataclass
class SweepOptions:
    """Run a W&B-format sweep file with W&B agents or Optuna; every trial is `lightning-gen fit` in a subprocess.

    Args:
        file: W&B-format sweep YAML (experiments/sweeps/*.yaml).
        backend: ``auto``: W&B when online, else Optuna.
        trials: Trials to finish (default: the file's ``run_cap``, else 10; a grid: its points). A grid stops when
            every point is done, and a rerun of a done grid starts no trial.
        storage: Optuna storage URL (default ``sqlite:///<root>/sweeps/<name>.db``).
        root: Folder of the default SQLite storage.
        workers: Trials run at once by this process (Optuna).
        heartbeat: Seconds between Optuna heartbeats; a trial silent for twice that is re-queued.
        seed: Sampler seed (Optuna).
        sweep_id: Attach to this W&B sweep instead of creating one.
        project: W&B project.
        entity: W&B entity.
        check: Dry-run the trial command with ``--print_config`` first (``--no_check`` skips it).
    """

    file: str
    backend: Literal["auto", "wandb", "optuna"] = "auto"
    trials: int | None = None
    storage: str | None = None
    root: str = "runs"
    workers: int = 1
    heartbeat: int = 10
    seed: int = 0
    sweep_id: str | None = None
    project: str = "lightning_gen"
    entity: str | None = None
    check: bool = True


def main(argv: list[str]) -> None:
    """Entry point of ``lightning-gen sweep``."""
    extra: list[str] = []
    if "--" in argv:
        argv, extra = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    epilog = "Arguments after `--` are appended to every trial's command (e.g. `-- --config experiments/debug.yaml`)."
    args = parse_options(
        SweepOptions,
        argv,
        "lightning-gen sweep",
        positional="file",
        epilog=epilog,
        aliases={"--sweep-id": "--sweep_id", "--no-check": "--no_check"},
    )
    spec = load_sweep(args.file)
    trials = args.trials or int(spec.raw.get("run_cap") or (len(grid_points(spec)) if spec.method == "grid" else 10))
    if trials < 1 or args.workers < 1 or args.heartbeat < 1:
        raise ConfigError("`--trials`, `--workers` and `--heartbeat` must be >= 1.")
    backend = args.backend
    if backend == "auto":
        from lightning_gen.loggers.wandb import resolve_wandb_mode

        backend = "wandb" if resolve_wandb_mode("auto")[0] == "online" else "optuna"
    if args.check:
        check_command(spec, _first_values(spec), extra)
    if backend == "wandb":
        sweep_id = run_wandb(spec, trials, args.sweep_id, args.project, args.entity)
        print(f"W&B sweep {sweep_id}: compare with `lightning-gen compare --sweep {spec.name}` or in the W&B UI.")
        return
    storage = args.storage or f"sqlite:///{Path(args.root, 'sweeps', spec.name + '.db').resolve()}"
    if storage.startswith("sqlite:///"):
        Path(storage[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    study = run_optuna(spec, trials, storage, args.workers, args.heartbeat, args.seed, extra)
    _print_summary(study, spec, storage)


def _print_summary(study: Any, spec: SweepSpec, storage: str) -> None:
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    complete = [t for t in done if t.state == TrialState.COMPLETE]
    print(f"sweep {spec.name}: {len(complete)} complete, {len(done) - len(complete)} pruned (storage {storage})")
    if complete:
        best = study.best_trial
        print(
            f"best: trial {best.number} {spec.metric}={best.value:.6g} {best.params} run {best.user_attrs.get('run_dir', '?')}"
        )
    print(f"compare: lightning-gen compare --sweep {spec.name} --storage {storage}")
