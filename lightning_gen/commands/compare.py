"""``lightning-gen compare RUN_DIR... | --sweep NAME``: a table of runs and a PNG of their curves.

    lightning-gen compare runs/vae_mnist/*                         # globs work too: 'runs/**/trial-*'
    lightning-gen compare --sweep vae_mnist_lr --metrics val/elbo train/loss --plot lr.png

Reads each run's ``metrics.csv`` (the CSV logger's history) and ``config.yaml`` (the resolved
config). The table has, per metric, the final and the best value ("best" follows the model's
``monitor`` direction for its monitored metric, ``--maximize`` for others, else minimum), and
one column per config key whose value differs between the runs. The PNG has one panel per
metric, one curve per run, against the logged step. W&B dashboards stay the online way to
compare (runs are grouped by experiment and sweep).
"""

from __future__ import annotations

import glob
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gen_common.errors import ConfigError
from lightning_gen.runs.devices import describe_devices, last_devices
from lightning_gen.runs.metrics_csv import read_complete_rows, row_step
from lightning_gen.sweeps.storage import default_storage, open_storage
from lightning_gen.utils.imports import import_object
from lightning_gen.utils.options import parse_options
from lightning_gen.utils.trees import flatten, short_key

_IGNORED_KEYS = ("run.id", "ckpt_path", "config", "trainer.logger", "run.tags", "run.group")


@dataclass
class RunRecord:
    """One run: its dir, flattened config and metric histories ``{metric: [(step, value)]}``."""

    path: Path
    config: dict[str, Any]
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    evaluations: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"


def read_history(path: Path) -> tuple[dict[str, list[tuple[int, float]]], int]:
    """Per-metric ``(step, value)`` lists from a Lightning ``metrics.csv`` (empty cells skipped), and how
    many rows were left out because a crash cut them short (a value cut mid-write is no value)."""
    _, rows, cut = read_complete_rows(str(path))
    history: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        step = row_step(row)
        for key, raw in row.items():
            if key in ("step", "epoch") or raw in (None, ""):
                continue
            try:
                history.setdefault(key, []).append((step, float(raw)))
            except ValueError:
                continue
    return history, cut


def load_run(path: Path) -> RunRecord:
    """Read one run directory (needs ``metrics.csv``; ``config.yaml`` and evaluations if present)."""
    metrics = path / "metrics.csv"
    if not metrics.is_file():
        raise ConfigError(f"{path} is not a run directory (no metrics.csv); pass runs/<name>/<id> folders.")
    config_file = path / "config.yaml"
    config = flatten(yaml.safe_load(config_file.read_text()) or {}) if config_file.is_file() else {}
    history, cut = read_history(metrics)
    if cut:
        print(
            f"compare: warning: {metrics}: {cut} row(s) cut short or malformed (a crash mid-write) are left out.",
            file=sys.stderr,
        )
    return RunRecord(path, config, history, evaluations(path))


def evaluations(run_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    """The run's ``lightning-gen evaluate`` records in the order they were written: ``(record folder, metrics)``."""
    found = []
    for record in sorted(run_dir.glob("eval/evaluate-*/evaluation.json"), key=lambda p: p.stat().st_mtime_ns):
        try:
            report = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        found.append((record.parent.name, dict(report.get("values") or {})))
    return found


def _is_run(path: Path) -> bool:
    return (path / "metrics.csv").is_file()


def _runs_under(folder: Path) -> list[Path]:
    """Training runs at any depth below ``folder`` (an experiment folder or a runs root); evaluation
    sub-runs (``<run>/eval/<record>``) belong to their run and are left out."""
    return sorted(m.parent for m in folder.rglob("metrics.csv") if m.parent.parent.name != "eval")


def expand(patterns: list[str]) -> list[Path]:
    """Run dirs named directly or by globs (``**`` allowed); a folder of runs (a runs root too) expands to its runs.

    Matches of a glob that are no run (checkpoint files, ``wandb/``, evaluation sub-runs) are skipped;
    a path named directly must be a run dir or hold some.
    """
    found: list[Path] = []
    for pattern in patterns:
        matches = [Path(m) for m in sorted(glob.glob(pattern, recursive=True))]
        if not matches or matches == [Path(pattern)]:  # named directly
            path = Path(pattern)
            found += [path] if _is_run(path) or not path.is_dir() else _runs_under(path)
        elif "**" in pattern:  # every run below is matched itself
            found += [m for m in matches if _is_run(m) and m.parent.name != "eval"]
        else:
            found += [r for m in matches if m.is_dir() for r in ([m] if _is_run(m) else _runs_under(m))]
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise ConfigError(f"No runs found for {patterns}: pass run dirs, an experiment folder or a runs root.")
    return unique


def sweep_runs(name: str, storage: str | None, root: str) -> list[Path]:
    """Run dirs of an Optuna sweep (from its study) or, without a study, ``<root>/**/<name>/*``."""
    db = storage or default_storage(root, name)
    if storage or Path(root, "sweeps", name + ".db").is_file():
        import optuna

        try:
            study = optuna.load_study(study_name=name, storage=open_storage(db))
        except KeyError:
            raise ConfigError(
                f"No sweep {name!r} in {db}; list studies with `optuna studies --storage {db}`."
            ) from None
        dirs = [t.user_attrs.get("run_dir") for t in study.get_trials(deepcopy=False)]
        paths = [Path(d) for d in dict.fromkeys(dirs) if d and Path(d, "metrics.csv").is_file()]
        if paths:
            return paths
    return expand([os.path.join(root, "**", name, "*")])


def monitor_of(run: RunRecord) -> tuple[str | None, str] | None:
    """The ``monitor`` (metric, "min"|"max") of the model class named by the run's config.

    A class attribute of the generator contract (:class:`lightning_gen.models.base.GenerativeModel`),
    read without building the model; ``None`` when the config names no class or it no longer imports.
    """
    class_path = run.config.get("model.class_path")
    if not class_path:
        return None
    try:
        model_class = import_object(str(class_path), "model class")
    except ConfigError:
        return None
    metric, mode = model_class.monitor
    return metric, mode


def summarize(
    runs: list[RunRecord], metrics: list[str], maximize: set[str]
) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, rows and the differing config keys of the comparison table."""
    keys = sorted({k for r in runs for k in r.config})
    differing = [k for k in keys if not k.startswith(_IGNORED_KEYS) and len({repr(r.config.get(k)) for r in runs}) > 1]
    header = ["run", *(short_key(k) for k in differing)]  # model.optimizer.lr
    for m in metrics:
        header += [f"{m} final", f"{m} best"]
    rows = []
    for r in runs:
        row = [r.name, *(_fmt(r.config.get(k)) for k in differing)]
        for m in metrics:
            values = [v for _, v in r.history.get(m, []) if math.isfinite(v)]
            best = (max if m in maximize else min)(values) if values else None
            row += [_fmt(values[-1] if values else None), _fmt(best)]
        rows.append(row)
    return header, rows, differing


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def plot(runs: list[RunRecord], metrics: list[str], path: Path) -> Path:
    """One panel per metric, one line per run, x = logged step; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for r in runs:
            points = r.history.get(m)
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, marker="." if len(points) < 30 else None, label=r.name)
        ax.set_title(m)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


@dataclass
class CompareOptions:
    """Compare runs: a table of final/best metrics and differing config keys, and a PNG of the curves.

    Args:
        runs: Run dirs or globs (quote globs with ``**``); a folder of runs expands to its runs.
        sweep: Compare the trials of this sweep (its name).
        storage: Optuna storage of ``--sweep`` (default ``sqlite:///<root>/sweeps/<name>.db``).
        root: Root of the runs and of the sweep databases.
        metrics: Metrics to show (default: the models' monitor, else every ``val/*``).
        maximize: Metrics where larger is better (besides a model's monitor).
        plot: PNG of the curves (``''``: none).
    """

    runs: list[str] = field(default_factory=list)
    sweep: str | None = None
    storage: str | None = None
    root: str = "runs"
    metrics: list[str] | None = None
    maximize: list[str] = field(default_factory=list)
    plot: str = "compare.png"


def main(argv: list[str]) -> None:
    """Entry point of ``lightning-gen compare``."""
    args = parse_options(CompareOptions, argv, "lightning-gen compare", positional="runs")
    if not args.runs and not args.sweep:
        raise ConfigError("Give run dirs (or globs) or `--sweep NAME` to compare.")
    paths = sweep_runs(args.sweep, args.storage, args.root) if args.sweep else []
    paths += expand(args.runs) if args.runs else []
    runs = [load_run(p) for p in dict.fromkeys(paths)]
    maximize = set(args.maximize)
    monitors = {m for r in runs if (m := monitor_of(r)) and m[0]}
    maximize |= {name for name, mode in monitors if mode == "max"}
    metrics = (
        args.metrics
        or sorted({name for name, _ in monitors})
        or sorted({k for r in runs for k in r.history if k.startswith("val/")})
    )
    if not metrics:
        raise ConfigError("No metrics to compare; name some with --metrics.")
    missing = [m for m in metrics if not any(m in r.history for r in runs)]
    if missing:
        known = sorted({k for r in runs for k in r.history})
        raise ConfigError(f"Metric(s) {missing} were logged by none of the runs; logged: {known}.")
    header, rows, _ = summarize(runs, metrics, maximize)
    if args.sweep:  # where each trial ran (`sweep --devices-per-trial`, Ray), from its devices.jsonl
        header.insert(1, "devices")
        for run, row in zip(runs, rows):
            row.insert(1, describe_devices(last_devices(run.path)))

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(runs)} runs" + (f" of sweep {args.sweep}" if args.sweep else ""))
    for h in header:
        table.add_column(h, justify="left" if h == "run" else "right", overflow="fold", no_wrap=h == "run")
    for row in rows:
        table.add_row(*row)
    console = Console(width=max(100, 18 * len(header)))
    console.print(table)
    evaluated = [(r, folder, metrics) for r in runs for folder, metrics in r.evaluations]
    if evaluated:
        names = sorted({k for _, _, metrics in evaluated for k in metrics})
        records = Table(title=f"{len(evaluated)} evaluations (`lightning-gen evaluate`, <run>/eval/)")
        for h in ["run", "record", *names]:
            records.add_column(h, justify="left" if h in ("run", "record") else "right", overflow="fold")
        for r, folder, metrics in evaluated:
            records.add_row(r.name, folder, *(_fmt(metrics.get(k)) for k in names))
        console.print(records)
    if args.plot:
        print(f"plot: {plot(runs, metrics, Path(args.plot))}")
