"""The Ray Tune backend: every trial is the sweep's ``lightning-gen fit``, run in a subprocess of a Tune trial.

    lightning-gen sweep FILE --backend ray --trials 8 --gpus-per-trial 2                        # a local cluster
    lightning-gen sweep FILE --backend ray --trials 8 --gpus-per-trial 2 --address HEAD:6379    # join one

Each Tune trial holds ``--cpus-per-trial`` CPUs and ``--gpus-per-trial`` GPUs (``tune.with_resources``); Ray sets
its ``CUDA_VISIBLE_DEVICES``, which the trial's process gets with a free ``MASTER_PORT`` (the run records both in
its ``devices.jsonl``). The trial follows its run's ``metrics.csv`` (a row is flushed as it is logged) and hands each
new value of the sweep metric to Tune, so ASHA (``early_terminate: hyperband``) can stop it: the process then gets
SIGTERM (checkpoint, exit). A trial whose node died is restarted by Tune (``FailureConfig``) under the same run id
with ``--ckpt_path=last``: it continues from its ``last.ckpt``, so run dirs must be on a filesystem every node sees.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gen_common.errors import ConfigError, LightningGenError
from lightning_gen.runs import env as run_env
from lightning_gen.runs.devices import DEVICES_FILE
from lightning_gen.runs.metrics_csv import read_complete_rows, row_step
from lightning_gen.sweeps.devices import VISIBLE_DEVICES, free_loopback_port, visible_devices
from lightning_gen.sweeps.spec import SweepSpec, first_values, grid_points
from lightning_gen.sweeps.trial import check_command, die_with_parent, trial_command

RAY_INSTALL = "pip install -e '.[ray]'"
INIT_TIMEOUT_S = 60.0  # ray.init / ray.nodes / ray.shutdown: a cluster that does not answer in this time is an error
PROBE_TIMEOUT_S = 5.0  # TCP connect to `--address` before ray.init
POLL_S = 0.5  # how often a trial looks at its metrics.csv
STOP_GRACE_S = 60.0  # a stopped trial's process: SIGTERM, then SIGKILL after this
_RUN_ID = re.compile(r"^trial-(\d+)$")


def require_ray() -> None:
    """One :class:`ConfigError` line when Ray Tune is not installed."""
    try:
        import ray  # noqa: F401
        from ray import tune  # noqa: F401
    except ImportError:
        raise ConfigError(f"`--backend ray` needs Ray Tune: {RAY_INSTALL}") from None


@dataclass
class _TrialSetup:
    """What every trial needs from the sweep process (shipped to the trial's worker by ``tune.with_parameters``)."""

    spec: SweepSpec
    extra: list[str]
    cwd: str  # the sweep's working directory: trial commands run there (a shared filesystem on a cluster)
    run_root: str  # absolute ``<run.root>/<name>`` of the trials' runs
    env: dict[str, str]  # the sweep process's environment, less what is each trial's own
    gpus: float  # per trial: 0 hides every GPU from the trial's process


def run_ray(
    spec: SweepSpec,
    trials: int,
    extra: list[str],
    cpus_per_trial: float,
    gpus_per_trial: float,
    address: str | None,
    seed: int = 0,
    check: bool = True,
    max_failures: int = 3,
) -> Any:
    """Run ``trials`` Tune trials (a grid: each point once, at most ``trials``) and return Tune's ``ResultGrid``.

    Without ``address`` a local Ray cluster is started (this process's visible CUDA devices as its GPUs) and shut
    down at the end; with one, the sweep joins that cluster and leaves it running.
    """
    require_ray()
    import ray
    from ray import tune

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # not its TensorBoard one: it imports torch
    _check_local_gpus(address, gpus_per_trial)
    print_config = _start_print_config(spec, extra)  # the dry run overlaps Ray's start
    try:
        _connect(address, cpus_per_trial)
        _check_fits(cpus_per_trial, gpus_per_trial, address)
        run_root = _run_root(print_config, spec, extra, check)
        env = {k: v for k, v in os.environ.items() if k not in (run_env.RUN_ID, run_env.OPTUNA_TRIAL, "MASTER_PORT")}
        env.pop(VISIBLE_DEVICES, None)
        setup = _TrialSetup(spec, extra, os.getcwd(), str(run_root), env, gpus_per_trial)
        trainable = tune.with_resources(
            tune.with_parameters(_trial, setup=setup), {"cpu": cpus_per_trial, "gpu": gpus_per_trial}
        )
        tuner, scheduler = _tuner(trainable, spec, trials, seed, run_root, max_failures)
        results = tuner.fit()
        results.stopped_early = set(scheduler.stopped) if scheduler is not None else set()
        results.run_root = run_root
        return results
    finally:
        if print_config.poll() is None:
            print_config.kill()
        _time_boxed(ray.shutdown, "ray.shutdown()")  # a joined cluster keeps running: only this driver leaves


def _tuner(
    trainable: Any, spec: SweepSpec, trials: int, seed: int, run_root: Path, max_failures: int
) -> tuple[Any, Any]:
    """Tune's ``Tuner`` for the sweep (search, scheduler, trial names = run ids, result files), and its scheduler."""
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    param_space, search_alg, num_samples = _search(spec, trials, seed)
    scheduler = _scheduler(spec)
    name_trial = _trial_names(_first_free_number(run_root))
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=spec.metric,
            mode="max" if spec.direction == "maximize" else "min",
            num_samples=num_samples,
            search_alg=search_alg,
            scheduler=scheduler,
            trial_name_creator=name_trial,
            trial_dirname_creator=lambda trial: trial.custom_trial_name,  # the run id, e.g. trial-0003
            reuse_actors=False,  # a stopped trial's actor exits, and its fit process with it (SIGTERM)
        ),
        run_config=tune.RunConfig(
            name=f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str(run_root.parent / "sweeps" / "ray"),
            failure_config=tune.FailureConfig(max_failures=max_failures),
            callbacks=[JsonLoggerCallback(), CSVLoggerCallback()],  # Tune's result.json, progress.csv per trial
            verbose=1,
        ),
    )
    return tuner, scheduler


def _trial_names(first: int) -> Callable[[Any], str]:
    """Tune's ``trial_name_creator``: its ``k``-th trial is ``trial-<first+k>``, the name of its run too.

    A function, not an object: Tune deep-copies its config, which would copy an object's counter but keeps a
    function (and the counter it closes over) as it is.
    """
    numbers = itertools.count(first)
    return lambda trial: f"trial-{next(numbers):04d}"


def _first_free_number(run_root: Path) -> int:
    """One past the highest ``trial-NNNN`` run in ``run_root``: a second sweep of the same name adds trials."""
    numbers = [int(m.group(1)) for p in run_root.glob("trial-*") if (m := _RUN_ID.match(p.name))]
    return max(numbers) + 1 if numbers else 0


def _start_print_config(spec: SweepSpec, extra: list[str]) -> subprocess.Popen:
    """The first trial's command with ``--print_config``: the dry run, and where the runs go (``run.root``)."""
    cmd = [*trial_command(spec, first_values(spec), [f"--run.name={spec.name}", *extra]), "--print_config"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run_root(proc: subprocess.Popen, spec: SweepSpec, extra: list[str], check: bool) -> Path:
    """Absolute ``<run.root>/<name>`` from the dry run; a rejected command is the trial check's one paragraph."""
    try:
        out, _ = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        out = ""
    if proc.returncode != 0 and check:
        check_command(spec, first_values(spec), extra)  # raises the ConfigError that names the fix
    try:
        root = (yaml.safe_load(out) or {}).get("run", {}).get("root") if proc.returncode == 0 else None
    except (yaml.YAMLError, AttributeError):
        root = None
    return (Path(root or "runs") / spec.name).resolve()


def _time_boxed(fn: Callable[[], Any], what: str, timeout_s: float = INIT_TIMEOUT_S) -> Any:
    """``fn()``; if it has not returned after ``timeout_s`` (Ray can wait on an absent GCS for ever), exit 1."""

    def expire() -> None:
        print(
            f"lightning-gen sweep: {what} did not return within {timeout_s:.0f} s: the Ray cluster does not answer. "
            "Check `ray status` on the head node, or drop `--address` to run on a local cluster.",
            file=sys.stderr,
            flush=True,
        )
        os._exit(1)

    timer = threading.Timer(timeout_s, expire)
    timer.daemon = True
    timer.start()
    try:
        return fn()
    finally:
        timer.cancel()


def _check_local_gpus(address: str | None, gpus_per_trial: float) -> None:
    """A local cluster's GPUs are this process's visible devices: refuse a trial that needs more, before Ray starts."""
    devices = visible_devices() if address is None and gpus_per_trial > 0 else []
    if address is None and gpus_per_trial > len(devices):
        seen = f"{VISIBLE_DEVICES}={','.join(devices)}" if devices else "no CUDA device"
        raise ConfigError(
            f"`--gpus-per-trial {gpus_per_trial:g}` needs that many GPUs, but this process sees {len(devices)} "
            f"({seen}) and a local Ray cluster gets only those. Give it more (`{VISIBLE_DEVICES}`), join a cluster "
            "with `--address HOST:PORT`, or use `--gpus-per-trial 0` for CPU trials. Nothing was run."
        )


def _connect(address: str | None, cpus_per_trial: float) -> None:
    """Join the cluster at ``address`` (checked to answer first) or start a local one on 127.0.0.1."""
    import ray

    if address is not None:
        host, _, port = address.removeprefix("ray://").rpartition(":")
        if address != "auto":
            try:
                socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S).close()
            except (OSError, ValueError) as err:
                raise ConfigError(
                    f"`--address {address}`: no Ray cluster answers there ({err}). Start one on the head node with "
                    "`ray start --head --port PORT` and pass `--address HEAD:PORT`, or drop `--address` to run on a "
                    "local cluster. Nothing was run."
                ) from None
        _time_boxed(lambda: ray.init(address=address, log_to_driver=True), f"ray.init(address={address!r})")
        return
    devices = visible_devices()
    _time_boxed(
        lambda: ray.init(
            address="local",  # never a stale /tmp/ray/ray_current_cluster
            num_cpus=math.ceil(max(float(os.cpu_count() or 1), cpus_per_trial)),
            num_gpus=len(devices),
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
        ),
        "ray.init(address='local')",
    )


def _check_fits(cpus_per_trial: float, gpus_per_trial: float, address: str | None) -> None:
    """Refuse trials that no live node of the cluster can hold (Tune would wait for ever)."""
    import ray

    nodes = _time_boxed(ray.nodes, "ray.nodes()")
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive")]
    if any(r.get("CPU", 0) >= cpus_per_trial and r.get("GPU", 0) >= gpus_per_trial for r in alive):
        return
    have = "; ".join(f"CPU {r.get('CPU', 0):g} GPU {r.get('GPU', 0):g}" for r in alive) or "no live node"
    where = f"the cluster at {address}" if address else "the local Ray cluster"
    raise ConfigError(
        f"A trial of `--cpus-per-trial {cpus_per_trial:g}` and `--gpus-per-trial {gpus_per_trial:g}` fits on no "
        f"node of {where} (nodes: {have}). Lower them, or add a node with `ray start --address HEAD:PORT`. "
        "Nothing was run."
    )


def _tune_domain(tune: Any, p: dict[str, Any]) -> Any:
    """One W&B parameter as a Tune search-space domain (a constant as itself)."""
    if "values" in p:
        return tune.choice(p["values"])
    if "value" in p:
        return p["value"]
    lo, hi = p["min"], p["max"]
    dist = p.get("distribution") or ("int_uniform" if isinstance(lo, int) and isinstance(hi, int) else "uniform")
    if dist == "int_uniform":
        return tune.randint(int(lo), int(hi) + 1)  # W&B's max is included, Tune's upper bound is not
    lo, hi, q = float(lo), float(hi), float(p.get("q", 1.0))
    return {
        "uniform": lambda: tune.uniform(lo, hi),
        "q_uniform": lambda: tune.quniform(lo, hi, q),
        "log_uniform_values": lambda: tune.loguniform(lo, hi),
        "q_log_uniform_values": lambda: tune.qloguniform(lo, hi, q),
    }[dist]()


def _search(spec: SweepSpec, trials: int, seed: int) -> tuple[dict[str, Any], Any, int]:
    """``(param_space, search_alg, num_samples)`` of the sweep ``method``: Tune's random sampling, the grid's points
    (each once, at most ``trials``), or Optuna's TPE through Tune's ``OptunaSearch`` (bayes)."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    space = {key: _tune_domain(tune, p) for key, p in spec.parameters.items()}
    if spec.method == "grid":  # each point once, in the file's order: Tune evaluates given points first
        points = grid_points(spec)
        if trials > len(points):
            print(f"sweep {spec.name}: --trials {trials} is more than the {len(points)} grid points; each runs once.")
        chosen = points[:trials]
        return space, BasicVariantGenerator(points_to_evaluate=chosen, random_state=seed), len(chosen)
    if spec.method == "bayes":
        try:
            from ray.tune.search.optuna import OptunaSearch

            return space, OptunaSearch(seed=seed), trials
        except ImportError:
            raise ConfigError("`method: bayes` on Ray uses Optuna's sampler: pip install -e '.[sweep]'") from None
    return space, BasicVariantGenerator(random_state=seed), trials


def _scheduler(spec: SweepSpec) -> Any:
    """``early_terminate: hyperband`` as ASHA over the reports (one per logged value of the metric), else none."""
    if spec.hyperband_min_iter is None:
        return None
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class _ASHA(ASHAScheduler):
        """ASHA that remembers which trials it stopped (the summary counts them)."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.stopped: set[str] = set()

        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
            decision = super().on_trial_result(tune_controller, trial, result)
            if decision == TrialScheduler.STOP and result.get(self._time_attr, 0) < self._max_t:  # not its end
                self.stopped.add(trial.trial_id)
            return decision

    early = spec.raw.get("early_terminate") or {}
    return _ASHA(
        grace_period=spec.hyperband_min_iter,
        reduction_factor=float(early.get("eta", 3)),
        max_t=int(early.get("max_iter", 10**6)),  # W&B has no cap unless the file sets one
    )


# ------------------------------------------------------------------------------------------------ the trial side


def metric_rows(csv_path: Path, metric: str, after_step: int) -> list[tuple[int, float]]:
    """``(step, value)`` of the complete rows of ``metrics.csv`` that log ``metric`` at a step past ``after_step``."""
    try:
        _, rows, _ = read_complete_rows(str(csv_path))
    except (OSError, ValueError):
        return []
    out = []
    for row in rows:
        step = row_step(row)
        try:
            value = float(row.get(metric) or "nan")
        except ValueError:
            continue
        if step is not None and step > after_step and math.isfinite(value):
            out.append((step, value))
    return out


def _line_count(path: Path) -> int:
    try:
        return len(path.read_text(encoding="utf-8").splitlines())
    except OSError:
        return 0


def _trial(config: dict[str, Any], setup: _TrialSetup) -> None:
    """A Tune trial: run the trial's ``lightning-gen fit`` and report the sweep metric as the run logs it.

    A restarted trial (its node died, or its process failed) finds its run dir and continues it from ``last.ckpt``;
    it reports again from the first row that run kept, so Tune's iterations stay the run's validations.
    """
    import ray
    from ray import tune

    spec = setup.spec
    run_id = tune.get_context().get_trial_name()  # trial-NNNN (_trial_names)
    run_dir = Path(setup.run_root) / run_id
    resumed = run_dir.exists()
    run_args = [
        f"--run.name={spec.name}",
        f"--run.id={run_id}",
        f"--run.group=sweep-{spec.name}",
        f"--run.tags=[sweep:{spec.name}]",
    ]
    if resumed:  # the process that ran it may still be saving: wait for its lock
        run_args += ["--ckpt_path=last", "--run.lock_wait_s=120"]
    cmd = trial_command(spec, config, run_args + setup.extra)
    env = dict(setup.env, MASTER_PORT=str(free_loopback_port()))
    env[VISIBLE_DEVICES] = os.environ.get(VISIBLE_DEVICES, "") if setup.gpus > 0 else ""  # Ray's choice
    print(
        f"{run_id}: node {ray.get_runtime_context().get_node_id()[:8]} GPUs {ray.get_gpu_ids()} "
        f"{VISIBLE_DEVICES}={env[VISIBLE_DEVICES]!r}{' resumed from last.ckpt' if resumed else ''}",
        flush=True,
    )
    devices_file, metrics_file = run_dir / DEVICES_FILE, run_dir / "metrics.csv"
    starts_before = _line_count(devices_file)  # a resumed run's rows are read once its new process has started
    proc = subprocess.Popen(
        cmd, cwd=setup.cwd, env=env, preexec_fn=die_with_parent if sys.platform == "linux" else None
    )
    reported, last_step = 0, -1
    try:
        while True:
            returncode = proc.poll()
            if returncode is not None or _line_count(devices_file) > starts_before:
                for step, value in metric_rows(metrics_file, spec.metric, last_step):
                    tune.report({spec.metric: value, "step": step})  # ASHA may stop the trial here
                    reported, last_step = reported + 1, step
            if returncode is not None:
                break
            time.sleep(POLL_S)
        if returncode != 0:
            raise LightningGenError(f"{run_id} exited with status {returncode} (run dir {run_dir})")
        if reported == 0:
            raise LightningGenError(f"{run_id} logged no {spec.metric}; is it a validation metric of this model?")
    finally:
        if proc.poll() is None:  # stopped by the scheduler, or the trial failed: the run checkpoints and exits
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def print_ray_summary(results: Any, spec: SweepSpec) -> None:
    """Trials finished, stopped early and failed; the best by its last value; how to compare them."""
    ok = [r for r in results if r.error is None]
    early = sum(1 for r in ok if (r.metrics or {}).get("trial_id") in getattr(results, "stopped_early", ()))
    print(
        f"sweep {spec.name}: {len(ok)} finished ({early} stopped early by ASHA), {results.num_errors} failed "
        f"(Ray Tune: {results.experiment_path})"
    )
    if any(spec.metric in (r.metrics or {}) for r in ok):
        mode = "max" if spec.direction == "maximize" else "min"
        best = results.get_best_result(metric=spec.metric, mode=mode, filter_nan_and_inf=True)
        run_dir = Path(results.run_root) / Path(best.path).name
        print(f"best: {run_dir.name} {spec.metric}={best.metrics[spec.metric]:.6g} {best.config} run {run_dir}")
    for r in results:
        if r.error is not None:
            print(f"failed: {Path(r.path).name}: {str(r.error).strip().splitlines()[-1][:300]}")
    print(f"compare: lightning-gen compare --sweep {spec.name}")
