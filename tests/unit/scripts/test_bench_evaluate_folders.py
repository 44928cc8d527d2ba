"""scripts/bench_evaluate_folders.py runs both commands on the PNGs it writes and prints their times and FIDs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.scripts import load_script


@pytest.mark.slow  # two new interpreters each import torch, and torch-fidelity's 2048-d eigensolve (~1 min)
def test_bench_evaluate_folders_times_both_commands_on_the_same_pngs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load_script("bench_evaluate_folders").main(["--n", "4", "--repeats", "1", "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert len(list((tmp_path / "real").glob("*.png"))) == len(list((tmp_path / "fake").glob("*.png"))) == 4
    assert re.search(r"repeat 1: lightning-gen evaluate +\d+\.\d s  FID \d", out)
    assert re.search(r"repeat 1: torch-fidelity +\d+\.\d s  FID \d", out)
    assert re.search(r"per pair: \d+\.\d\dx; median \d+\.\d\dx", out)
    difference = float(re.search(r"relative difference (\S+)", out).group(1))
    assert difference < 1e-4  # the same weights, torch-fidelity's definition
