"""``scripts/reproduce.py vae_mnist --smoke``: fit (``debug.yaml``) and test with k=8 through the CLI, one results line."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import REPO_ROOT
from tests.helpers.scripts import load_script

reproduce = load_script("reproduce")


@pytest.mark.slow
def test_smoke_run_of_the_vae_row(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """fit (debug.yaml) + test with k=8 through the CLI; one smoke line with the checkpoint's hash."""
    results = tmp_path / "results.jsonl"
    cmd = [
        sys.executable,
        str(REPO_ROOT / "scripts" / "reproduce.py"),
        "vae_mnist",
        "--smoke",
        "--results",
        str(results),
        "--run-root",
        str(tmp_path / "runs"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**cli_env, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (line,) = reproduce.read_results(results)
    assert line["row"] == "vae_mnist" and line["smoke"] is True and line["iw_samples"] == 8
    assert 0 < line["metrics"]["test/nll"] < 784 * math.log(2)  # below a uniform Bernoulli (543 nats) after 20 steps
    ckpt = Path(line["run_dir"]) / "checkpoints" / "last.ckpt"
    assert line["checkpoint_sha256"] == reproduce.sha256(ckpt)
    assert len(line["commands"]) == 2 and "--model.init_args.iw_samples=8" in line["commands"][1]
    assert reproduce.newest_results([line]) == {}  # smoke never enters the table
