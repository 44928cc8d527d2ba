"""Where a measurement came from (machine, commit, date), and the benchmark records the docs are made from.

``scripts/reproduce.py`` stamps each results-table line with :func:`hardware` and :func:`commit`; every
``scripts/bench_*.py`` run with ``--record`` appends what it printed, its command and stamp to
``results/benchmarks.jsonl`` (:func:`recorded`). ``python scripts/reproduce.py --table`` renders the
newest record of each benchmark into ``docs/benchmarks.md`` (:func:`render_benchmarks`), so that page's
figures are generated, dated and attributed to a machine, never typed by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from lightning_gen.runs import env

#: where the bench scripts' records go, relative to the repository root
BENCHMARKS_FILE = Path("results") / "benchmarks.jsonl"


def hardware() -> str:
    """The GPU name when CUDA is visible, else the CPU model and core count from /proc/cpuinfo."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def commit(repo: Path) -> str:
    """``git rev-parse HEAD`` of ``repo``, with ``-dirty`` when tracked files differ from it.

    A copy of the tree without ``.git`` (a remote machine) names its commit in ``$LIGHTNING_GEN_COMMIT``.
    """
    if os.environ.get(env.COMMIT):
        return os.environ[env.COMMIT]
    git = ["git", "-C", str(repo)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
    ).stdout.strip()
    return head + ("-dirty" if dirty else "")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of ``path`` (none if it does not exist)."""
    return [json.loads(s) for s in path.read_text().splitlines() if s.strip()] if path.exists() else []


def add_record_argument(parser: argparse.ArgumentParser, repo: Path) -> None:
    """``--record [FILE]``: append this run's table to the benchmark records (``results/benchmarks.jsonl``)."""
    parser.add_argument(
        "--record",
        nargs="?",
        type=Path,
        const=repo / BENCHMARKS_FILE,
        default=None,
        metavar="FILE",
        help=f"append the output, command, machine and commit to FILE (default {BENCHMARKS_FILE}), "
        "from which `scripts/reproduce.py --table` renders docs/benchmarks.md",
    )


class _Tee(io.TextIOBase):
    """Writes to the real stdout and keeps a copy."""

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


@contextlib.contextmanager
def recorded(path: Path | None, bench: str, repo: Path) -> Iterator[None]:
    """Run the body; if it ends without error and ``path`` is set, append what it printed as one record of ``bench``.

    The record holds the output, the command, the date, the machine (:func:`hardware`), torch, the commit and the
    load average at the end (a loaded machine makes timings noise, and the reader should see it).
    """
    if path is None:
        yield
        return
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        yield
    import torch

    record = {
        "bench": bench,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "hardware": hardware(),
        "torch": torch.__version__,
        "commit": commit(repo),
        "command": shlex.join(["python", *sys.argv]),
        "load_average": round(os.getloadavg()[0], 2),
        "output": tee.copy.getvalue().strip(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"{bench}: recorded in {path}")


def render_benchmarks(records: list[dict[str, Any]]) -> str:
    """Markdown: the newest record of each benchmark, in order of first appearance, with its stamp and command."""
    newest: dict[str, dict[str, Any]] = {}
    for record in records:
        newest[record["bench"]] = record
    if not newest:
        return "No benchmark recorded yet: run a `scripts/bench_*.py` with `--record`."
    parts = []
    for bench, r in newest.items():
        stamp = f"{r['date'][:10]}, {r['hardware']}, torch {r['torch']}, commit `{r['commit'][:12]}`"
        load = f", load average {r['load_average']} at the end" if "load_average" in r else ""
        parts.append(f"### `{bench}`\n\n{stamp}{load}:\n\n    {r['command']}\n\n```text\n{r['output']}\n```")
    return "\n\n".join(parts)
