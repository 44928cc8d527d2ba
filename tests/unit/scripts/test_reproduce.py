"""scripts/reproduce.py: the commands a row produces, the README table, refused GPU rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers.paths import REPO_ROOT
from tests.helpers.scripts import load_script

reproduce = load_script("reproduce")

ROWS = reproduce.load_rows()


def _flags(cmd: list[str]) -> list[str]:
    return cmd[3:]  # after `python -m lightning_gen`


def test_rows_name_existing_experiments_and_anchors() -> None:
    for name, row in ROWS.items():
        for path in row["experiments"]:
            assert (REPO_ROOT / path).is_file(), (name, path)
        assert row.get("anchor") or row.get("anchor_note"), name  # every row: an anchor or why there is none
    assert ROWS["vae_mnist"]["anchor"]["value"] == 86.76
    assert ROWS["gpt_shakespeare_char"]["anchor"]["value"] == 1.88
    assert ROWS["ddpm_cifar10"]["anchor"]["value"] == 3.17


def test_fit_and_eval_commands_of_rows(tmp_path: Path) -> None:
    fit = reproduce.fit_command(ROWS["vae_fashion_mnist"], "runs/reproduce", "vae_fashion_mnist", "r1", smoke=True)
    assert fit[:3] == [sys.executable, "-m", "lightning_gen"]
    assert _flags(fit) == [
        "fit",
        "--config",
        "experiments/vae_mnist.yaml",
        "--config",
        "experiments/debug.yaml",
        "--data=datamodules.FashionMNISTDataModule",
        "--run.root=runs/reproduce",
        "--run.name=vae_fashion_mnist",
        "--run.id=r1",
        "--run.wandb=disabled",
        "--run.progress=none",
    ]
    run = tmp_path / "run"
    full = reproduce.eval_command(ROWS["vae_mnist"], run, smoke=False, out=tmp_path / "e.json")
    assert _flags(full) == [
        "test",
        "--config",
        str(run / "config.yaml"),
        f"--ckpt_path={run / 'checkpoints/last.ckpt'}",
        "--model.init_args.iw_samples=5000",
    ]
    assert (
        _flags(reproduce.eval_command(ROWS["vae_mnist"], run, smoke=True, out=tmp_path / "e.json"))[-1]
        == "--model.init_args.iw_samples=8"
    )
    image = reproduce.eval_command(ROWS["dcgan_mnist"], run, smoke=False, out=tmp_path / "e.json")
    assert _flags(image) == [
        "evaluate",
        "--ckpt",
        str(run / "checkpoints/last.ckpt"),
        "--metrics",
        "fid",
        "kid",
        "fd_classifier",
        "--num_samples",
        "10000",
        "--num_real",
        "10000",
        "--split",
        "test",
        "--out",
        str(tmp_path / "e.json"),
        "--device",
        "cpu",
    ]
    on_gpu = reproduce.eval_command(ROWS["dcgan_mnist"], run, smoke=False, out=tmp_path / "e.json", device="cuda")
    assert on_gpu[-2:] == ["--device", "cuda"]
    assert reproduce.eval_device("cpu") == "cpu" and reproduce.eval_device("auto") in ("cpu", "cuda")
    assert "16" in reproduce.eval_command(ROWS["ddpm_mnist"], run, smoke=True, out=tmp_path / "e.json")
    assert reproduce.eval_command(ROWS["gpt_shakespeare_char"], run, smoke=False, out=tmp_path / "e.json") is None
    lstm = reproduce.fit_command(ROWS["lstm_shakespeare_char"], "r", "lstm_shakespeare_char", "x", smoke=False)
    assert "--model.init_args.architecture=lstm" in lstm and "experiments/debug.yaml" not in lstm


def test_lstm_row_has_the_gpt_parameter_count() -> None:
    """The LSTM baseline is sized for equal parameters (within 1 %) at the Shakespeare-char vocabulary (80)."""
    from lightning_gen.nets.gpt import GPT as GPTNet
    from lightning_gen.nets.gpt import GPTConfig
    from lightning_gen.nets.lstm import LSTMConfig, LSTMDecoder

    flags = dict(a.removeprefix("--model.init_args.").split("=") for a in ROWS["lstm_shakespeare_char"]["overrides"])
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    gpt = count(GPTNet(GPTConfig(80, 64, 4, 4, 128, 0.0, False)))
    lstm = count(LSTMDecoder(LSTMConfig(80, int(flags["n_layer"]), int(flags["n_embd"]), 0.0)))
    assert (gpt, lstm) == (806_016, 809_856)


def _line(row: str, smoke: bool, **metrics: float) -> dict:
    return {
        "row": row,
        "smoke": smoke,
        "metrics": metrics,
        "n": 10000,
        "train_s": 600.0,
        "eval_s": 120.0,
        "hardware": "CPU X (2 cores)",
        "commit": "abcdef0123456789",
    }


def test_table_newest_non_smoke_line_per_row(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    lines = [
        _line("vae_mnist", False, **{"test/nll": 90.5}),
        _line("vae_mnist", False, **{"test/nll": 88.25}),  # newer: wins
        _line("vae_mnist", True, **{"test/nll": 300.0}),  # smoke: never in the table
        _line("dcgan_mnist", True, fid=99.0),  # only smoke: "not run"
        _line("gpt_shakespeare_char", False, **{"val/loss": 1.9012, "val/ppl": 6.69}),
    ]
    results.write_text("".join(json.dumps(x) + "\n" for x in lines))
    table = reproduce.render_table(ROWS, reproduce.read_results(results)).splitlines()
    by_row = {line.split(" | ")[0].lstrip("| "): line for line in table[2:]}
    assert list(by_row) == list(ROWS)
    assert (
        "test/nll 88.25" in by_row["vae_mnist"]
        and "300" not in by_row["vae_mnist"]
        and "90.5" not in by_row["vae_mnist"]
    )
    assert "86.76 NLL (nats) (Burda et al. 2016" in by_row["vae_mnist"]
    assert "10.0 / 2.0 min" in by_row["vae_mnist"] and "`abcdef012345`" in by_row["vae_mnist"]
    assert "| not run |" in by_row["dcgan_mnist"] and "99" not in by_row["dcgan_mnist"]
    assert "val/loss 1.901" in by_row["gpt_shakespeare_char"] and "1.88 val loss" in by_row["gpt_shakespeare_char"]
    assert "not run here (GPU protocol)" in by_row["sngan_cifar10"] and "16.77 FID" in by_row["sngan_cifar10"]
    assert "| — (" in by_row["wgan_gp_mnist"]


def _table_command(results: Path, benchmarks: Path, readme: Path, page: Path) -> list[str]:
    script = str(REPO_ROOT / "scripts" / "reproduce.py")
    return [sys.executable, script, "--table", "--results", str(results), "--benchmarks", str(benchmarks)] + [
        "--readme",
        str(readme),
        "--docs-page",
        str(page),
    ]


def test_table_rewrite_keeps_the_rest_of_readme_and_the_docs_page(tmp_path: Path) -> None:
    """README's table and docs/benchmarks.md's generated part are rewritten; every other byte stays; no markers: refused."""
    readme, page = tmp_path / "README.md", tmp_path / "benchmarks.md"
    original, original_page = (REPO_ROOT / "README.md").read_text(), (REPO_ROOT / "docs" / "benchmarks.md").read_text()
    readme.write_text(original)
    page.write_text(original_page)
    results, benchmarks = tmp_path / "results.jsonl", tmp_path / "benchmarks.jsonl"
    results.write_text(json.dumps(_line("vae_mnist", False, **{"test/nll": 88.25})) + "\n")
    record = {"bench": "bench_x", "date": "2026-12-06T05:00:00+0000", "hardware": "CPU X (2 cores)", "torch": "2.14.1"}
    record |= {"commit": "abcdef0123456789", "command": "python scripts/bench_x.py --record", "output": "| a |"}
    benchmarks.write_text(json.dumps(record | {"output": "| old |"}) + "\n" + json.dumps(record) + "\n")
    subprocess.run(_table_command(results, benchmarks, readme, page), check=True, capture_output=True)
    new, new_page = readme.read_text(), page.read_text()
    begin, end = reproduce.BEGIN, reproduce.END
    assert new[: new.index(begin)] == original[: original.index(begin)]
    assert new[new.index(end) :] == original[original.index(end) :]
    assert "test/nll 88.25" in new[new.index(begin) : new.index(end)]
    begin, end = reproduce.DOCS_MARKERS
    assert new_page[: new_page.index(begin)] == original_page[: original_page.index(begin)]
    assert new_page[new_page.index(end) :] == original_page[original_page.index(end) :]
    generated = new_page[new_page.index(begin) : new_page.index(end)]
    assert "test/nll 88.25" in generated and "### `bench_x`" in generated and "| old |" not in generated
    assert "2026-12-06, CPU X (2 cores), torch 2.14.1, commit `abcdef012345`" in generated
    readme.write_text("no markers\n")
    proc = subprocess.run(_table_command(results, benchmarks, readme, page), capture_output=True, text=True)
    assert proc.returncode == 1 and "has no `<!-- results:begin -->`" in proc.stderr
    assert readme.read_text() == "no markers\n" and page.read_text() == new_page


def test_committed_readme_table_and_benchmarks_page_are_what_the_records_render() -> None:
    """No hand edit inside the markers: the committed tables equal the rendering of the committed records."""
    readme, page = (REPO_ROOT / "README.md").read_text(), (REPO_ROOT / "docs" / "benchmarks.md").read_text()
    table = reproduce.render_table(reproduce.load_rows(), reproduce.read_results(reproduce.RESULTS_FILE))
    assert reproduce.rewrite_between_markers(readme, table) == readme
    records = reproduce.read_results(REPO_ROOT / reproduce.BENCHMARKS_FILE)
    generated = f"{table}\n\n{reproduce.render_benchmarks(records)}"
    assert reproduce.rewrite_between_markers(page, generated, reproduce.DOCS_MARKERS) == page


def test_gpu_row_refused_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "scripts" / "reproduce.py"),
            "sngan_cifar10",
            "--results",
            str(tmp_path / "r.jsonl"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "GPU protocol" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r.jsonl").exists()
