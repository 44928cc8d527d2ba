"""``<run>/devices.jsonl``: the devices each start of a run trained on, one JSON line per start (resumes add one).

A sweep gives each trial its own ``CUDA_VISIBLE_DEVICES`` (``sweep --devices-per-trial``, or Ray): this file is
where the run says what it saw, whichever backend started it; ``compare --sweep`` shows the last line's devices.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # compare reads the file without importing Lightning
    import lightning as L

DEVICES_FILE = "devices.jsonl"


def record_devices(run_dir: Path, trainer: L.Trainer) -> None:
    """Append this start's host, visible CUDA devices, accelerator, devices and nodes (no collective: rank 0 only)."""
    line = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": socket.gethostname(),
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "accelerator": type(trainer.accelerator).__name__.replace("Accelerator", "").lower(),
        "devices": trainer.num_devices,
        "num_nodes": trainer.num_nodes,
        "MASTER_PORT": os.environ.get("MASTER_PORT"),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / DEVICES_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


def last_devices(run_dir: Path) -> dict[str, Any] | None:
    """The last complete line of ``devices.jsonl``, or ``None`` (no file, or only a cut line)."""
    try:
        lines = (run_dir / DEVICES_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for raw in reversed(lines):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            continue
    return None


def describe_devices(record: dict[str, Any] | None) -> str:
    """One short cell: ``CUDA 2,3`` for a run given its visible devices, else like ``cpu x2``; ``-`` if unknown."""
    if record is None:
        return "-"
    visible = record.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return f"CUDA {visible}"
    return f"{record.get('accelerator', '?')} x{record.get('devices', '?')}"
