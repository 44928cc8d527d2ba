"""Train and evaluate one row of the results table, and append its line to the results file.

    python scripts/reproduce.py vae_mnist                # full budget, the row's protocol
    python scripts/reproduce.py vae_mnist --smoke        # debug.yaml + tiny N: the pipeline in ~1 min
    python scripts/reproduce.py --table                  # rewrite README's table from the results file

Rows live in ``experiments/results/rows.yaml`` (experiment files, budget overrides, protocol, N,
anchor). Each run appends one JSON line: metric values, N, wall times, hardware, torch version,
commit, checkpoint SHA-256 and the exact commands. The README table shows the newest non-smoke
line per row.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from lightning_gen.utils.provenance import BENCHMARKS_FILE, commit, hardware, render_benchmarks
from lightning_gen.utils.provenance import read_jsonl as read_results

REPO = Path(__file__).resolve().parent.parent
ROWS_FILE = REPO / "experiments" / "results" / "rows.yaml"
RESULTS_FILE = REPO / "results" / "results.jsonl"
README = REPO / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
DOCS_PAGE = REPO / "docs" / "benchmarks.md"
DOCS_MARKERS = ("<!-- benchmarks:begin -->", "<!-- benchmarks:end -->")
SMOKE_N, SMOKE_K = 16, 8
TAIL_LINES = 15


class ReproduceError(Exception):
    """One clear line for the user: which step failed and why."""


def load_rows(path: Path = ROWS_FILE) -> dict[str, dict[str, Any]]:
    """The rows of the table, in order, from ``rows.yaml``."""
    return yaml.safe_load(path.read_text())


def lg_command(*args: str) -> list[str]:
    """``lightning-gen ARGS`` with this interpreter (the venv that runs this script)."""
    return [sys.executable, "-m", "lightning_gen", *args]


def fit_command(row: dict[str, Any], run_root: str, name: str, run_id: str, smoke: bool) -> list[str]:
    """``lightning-gen fit`` of a row: its experiment files (+ debug.yaml when smoking), overrides, run dir."""
    configs = [*row["experiments"], *(["experiments/debug.yaml"] if smoke else [])]
    return lg_command(
        "fit",
        *(a for c in configs for a in ("--config", c)),
        *row.get("overrides", []),
        f"--run.root={run_root}",
        f"--run.name={name}",
        f"--run.id={run_id}",
        "--run.wandb=disabled",
        "--run.progress=none",
    )


def eval_command(row: dict[str, Any], run_dir: Path, smoke: bool, out: Path, device: str = "cpu") -> list[str] | None:
    """The row's evaluation command (``None`` for ``text``: its numbers are in the fit run's metrics.csv)."""
    protocol = row["protocol"]
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if protocol["kind"] == "vae_nll":
        k = SMOKE_K if smoke else protocol["iw_samples"]
        return lg_command(
            "test", "--config", str(run_dir / "config.yaml"), f"--ckpt_path={ckpt}", f"--model.init_args.iw_samples={k}"
        )
    if protocol["kind"] == "image":
        n = str(SMOKE_N if smoke else row["n"])
        return lg_command(
            "evaluate",
            "--ckpt",
            str(ckpt),
            "--metrics",
            *protocol["metrics"],
            "--num_samples",
            n,
            "--num_real",
            n,
            "--split",
            "test",
            "--out",
            str(out),
            "--device",
            device,
        )
    if protocol["kind"] == "text":
        return None
    raise ReproduceError(f"row protocol {protocol['kind']!r} is not run by this script (GPU protocol: not run here).")


def run_logged(cmd: list[str], log: Path) -> tuple[str, float]:
    """Run ``cmd`` from the repo root with its output in ``log``; its stdout and wall seconds, or a one-line error."""
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"reproduce: {shlex.join(cmd)}  (log: {log})", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seconds = time.perf_counter() - start
    log.write_text(f"$ {shlex.join(cmd)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    if proc.returncode != 0:
        tail = [line for line in (proc.stderr or proc.stdout).strip().splitlines() if line.strip()][-TAIL_LINES:]
        raise ReproduceError(
            f"`lightning-gen {cmd[3]}` failed (exit {proc.returncode}, full log {log}):\n" + "\n".join(tail)
        )
    return proc.stdout, seconds


def last_metrics(metrics_csv: Path, keys: list[str]) -> dict[str, float]:
    """The last logged value of each of ``keys`` in a CSV logger's ``metrics.csv``."""
    found: dict[str, float] = {}
    with metrics_csv.open() as f:
        for line in csv.DictReader(f):
            for key in keys:
                if line.get(key) not in (None, ""):
                    found[key] = float(line[key])
    missing = [k for k in keys if k not in found]
    if missing:
        raise ReproduceError(f"{metrics_csv} has no value for {', '.join(missing)}.")
    return found


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def eval_device(choice: str) -> str:
    """``auto``: ``cuda`` when a GPU is visible (the fit's Trainer picks it too), else ``cpu``."""
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if choice == "auto" else choice


def reproduce(
    name: str, rows: dict[str, dict[str, Any]], results: Path, run_root: str, smoke: bool, device: str = "auto"
) -> dict[str, Any]:
    """Train row ``name``, evaluate it with its protocol, append and return its results line."""
    if name not in rows:
        raise ReproduceError(f"unknown row {name!r}; rows: {', '.join(rows)}.")
    row = rows[name]
    if row["protocol"]["kind"] == "gpu":
        raise ReproduceError(
            f"row {name} keeps its GPU protocol (N = {row['n']}): not run here; run its experiment on a GPU."
        )
    import torch

    run_id = f"{name}{'-smoke' if smoke else ''}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(run_root if Path(run_root).is_absolute() else REPO / run_root) / name / run_id
    logs = run_dir.parent / "reproduce-logs"
    fit = fit_command(row, run_root, name, run_id, smoke)
    _, train_s = run_logged(fit, logs / f"{run_id}-fit.log")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if not ckpt.exists():
        raise ReproduceError(f"fit finished but wrote no {ckpt}.")
    protocol = row["protocol"]
    out = run_dir / "eval" / "reproduce-evaluation.json"
    evaluate = eval_command(row, run_dir, smoke, out, eval_device(device))
    eval_s, metrics = 0.0, {}
    if protocol["kind"] == "vae_nll":
        stdout, eval_s = run_logged(evaluate, logs / f"{run_id}-test.log")
        match = re.search(r"written to (\S+) \(", stdout)
        if not match:
            raise ReproduceError("`lightning-gen test` did not say where it wrote its metrics.")
        metrics = last_metrics(Path(match.group(1)) / "metrics.csv", ["test/nll", "test/elbo", "test/bpd"])
    elif protocol["kind"] == "image":
        _, eval_s = run_logged(evaluate, logs / f"{run_id}-evaluate.log")
        metrics = {k: float(v) for k, v in json.loads(out.read_text())["values"].items()}
    else:
        metrics = last_metrics(run_dir / "metrics.csv", ["val/loss", "val/ppl"])
    line = {
        "row": name,
        "smoke": smoke,
        "metrics": metrics,
        "n": (SMOKE_N if protocol["kind"] == "image" else "debug.yaml limits") if smoke else row["n"],
        **({"iw_samples": SMOKE_K if smoke else protocol["iw_samples"]} if protocol["kind"] == "vae_nll" else {}),
        "train_s": round(train_s, 1),
        "eval_s": round(eval_s, 1),
        "hardware": hardware(),
        "torch": torch.__version__,
        "commit": commit(REPO),
        "checkpoint_sha256": sha256(ckpt),
        "run_dir": str(run_dir),
        "commands": [shlex.join(c) for c in (fit, evaluate) if c],
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    results.parent.mkdir(parents=True, exist_ok=True)
    with results.open("a") as f:
        f.write(json.dumps(line) + "\n")
    return line


# --- the README table --------------------------------------------------------------------------------
def primary_metrics(row: dict[str, Any]) -> list[str]:
    protocol = row["protocol"]
    if protocol["kind"] == "vae_nll":
        return [protocol["metric"]]
    if protocol["kind"] == "text":
        return [protocol["metric"]]
    return ["kid_mean" if m == "kid" else m for m in protocol.get("metrics", [])]


def newest_results(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The newest (last appended) non-smoke line of each row."""
    newest: dict[str, dict[str, Any]] = {}
    for line in lines:
        if not line.get("smoke"):
            newest[line["row"]] = line
    return newest


def render_table(rows: dict[str, dict[str, Any]], lines: list[dict[str, Any]]) -> str:
    """Markdown table: one line per row, its newest non-smoke result or "not run", and its anchor."""
    newest = newest_results(lines)
    out = [
        "| row | protocol | N | result | anchor (source) | train / eval | hardware, commit, date |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        protocol = row["protocol"]
        kind = protocol["kind"] + (f", k={protocol['iw_samples']}" if "iw_samples" in protocol else "")
        anchor = row.get("anchor")
        anchor_text = (
            f"{anchor['value']} {anchor['metric']} ({anchor['source']})"
            if anchor
            else f"— ({row.get('anchor_note', 'no published anchor')})"
        )
        line = newest.get(name)
        if line is None:
            result = "not run here (GPU protocol)" if protocol["kind"] == "gpu" else "not run"
            out.append(f"| {name} | {kind} | {row['n']} | {result} | {anchor_text} | | |")
            continue
        values = ", ".join(f"{k} {line['metrics'][k]:.4g}" for k in primary_metrics(row) if k in line["metrics"])
        times = f"{line['train_s'] / 60:.1f} / {line['eval_s'] / 60:.1f} min"
        out.append(
            f"| {name} | {kind} | {line['n']} | {values} | {anchor_text} | {times} | "
            f"{line['hardware']}, `{line['commit'][:12]}`{', ' + line['date'][:10] if line.get('date') else ''} |"
        )
    return "\n".join(out)


def rewrite_between_markers(
    text: str, table: str, markers: tuple[str, str] = (BEGIN, END), name: str = "README.md"
) -> str:
    """``text`` with everything between ``markers`` replaced by ``table`` (the rest byte-identical)."""
    begin, end = markers
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise ReproduceError(f"{name} has no `{begin}` ... `{end}` markers.")
    return text[: start + len(begin)] + "\n" + table + "\n" + text[stop:]


def write_tables(readme: Path, docs_page: Path, results: Path, benchmarks: Path) -> None:
    """README's results table, and docs/benchmarks.md's generated part: that table and every benchmark's newest record."""
    table = render_table(load_rows(), read_results(results))
    new_readme = rewrite_between_markers(readme.read_text(), table)
    generated = f"{table}\n\n{render_benchmarks(read_results(benchmarks))}"
    new_page = rewrite_between_markers(docs_page.read_text(), generated, DOCS_MARKERS, docs_page.name)
    readme.write_text(new_readme)
    docs_page.write_text(new_page)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("row", nargs="?", help="row name from experiments/results/rows.yaml")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="layer experiments/debug.yaml, N=16, k=8; marked smoke (never in the table)",
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS_FILE, help="results file (JSON lines) to append to / render"
    )
    parser.add_argument("--run-root", default="runs/reproduce", help="--run.root of the training runs")
    parser.add_argument(
        "--device", default="auto", help="device of `lightning-gen evaluate` (auto: cuda when visible, else cpu)"
    )
    parser.add_argument(
        "--table",
        action="store_true",
        help="rewrite README.md's results table from --results, and docs/benchmarks.md's generated part from it and "
        "--benchmarks",
    )
    parser.add_argument(
        "--benchmarks", type=Path, default=REPO / BENCHMARKS_FILE, help="benchmark records (bench scripts' --record)"
    )
    parser.add_argument("--readme", type=Path, default=README, help=argparse.SUPPRESS)
    parser.add_argument("--docs-page", type=Path, default=DOCS_PAGE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rows = load_rows()
    try:
        if args.table:
            write_tables(args.readme, args.docs_page, args.results, args.benchmarks)
            print(f"reproduce: wrote the results table into {args.readme} and the benchmarks into {args.docs_page}")
            return 0
        if not args.row:
            parser.error(f"give a ROW ({', '.join(rows)}) or --table")
        line = reproduce(args.row, rows, args.results, args.run_root, args.smoke, args.device)
    except ReproduceError as err:
        print(f"reproduce: {err}", file=sys.stderr)
        return 1
    print(json.dumps(line, indent=1))
    print(f"reproduce: appended row {args.row} to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
