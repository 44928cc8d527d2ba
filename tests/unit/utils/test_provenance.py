"""Benchmark records: what a bench printed, stamped with machine, commit and date; nothing for a failed run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightning_gen.utils.provenance import read_jsonl, recorded, render_benchmarks
from tests.helpers.paths import REPO_ROOT


def test_recorded_keeps_the_output_and_the_stamp_and_still_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "results" / "benchmarks.jsonl"
    for ratio in ("1.10x", "1.25x"):
        with recorded(path, "bench_demo", REPO_ROOT):
            print(f"| ours / theirs | {ratio} |")
    assert "| ours / theirs | 1.25x |" in capsys.readouterr().out
    records = read_jsonl(path)
    assert [r["output"] for r in records] == ["| ours / theirs | 1.10x |", "| ours / theirs | 1.25x |"]
    assert all(r["hardware"] and len(r["commit"]) >= 40 and r["date"][:2] == "20" for r in records)
    rendered = render_benchmarks(records)
    assert rendered.count("### `bench_demo`") == 1 and "1.25x" in rendered and "1.10x" not in rendered


def test_a_failed_or_unrecorded_run_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.jsonl"
    with pytest.raises(RuntimeError), recorded(path, "bench_demo", REPO_ROOT):
        print("half a table")
        raise RuntimeError("the bench failed")
    with recorded(None, "bench_demo", REPO_ROOT):
        print("not asked to record")
    assert not path.exists()
    path.write_text(json.dumps({"bench": "x"}) + "\n")
    assert read_jsonl(path) == [{"bench": "x"}]
