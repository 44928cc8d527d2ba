"""The W&B backend: a W&B sweep and one ``wandb agent`` (needs W&B online)."""

from __future__ import annotations

import subprocess
import sys

from lightning_gen.sweeps.spec import SweepSpec


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
