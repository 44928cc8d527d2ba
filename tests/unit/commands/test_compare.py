"""``lightning-gen compare``: final and best values, the differing config, the monitor from the model's contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightning_gen.__main__ import main
from lightning_gen.commands.compare import flatten, load_run, summarize


def test_compare_table_has_final_best_and_differing_config(tmp_path: Path) -> None:
    for name, lr, values in (("a", 0.1, [-5.0, -3.0, -4.0]), ("b", 0.01, [-6.0, -2.0, -2.5])):
        run = tmp_path / "exp" / name
        run.mkdir(parents=True)
        run.joinpath("metrics.csv").write_text(
            "epoch,step,val/elbo\n" + "".join(f"{i},{i},{v}\n" for i, v in enumerate(values))
        )
        run.joinpath("config.yaml").write_text(
            f"model:\n  init_args:\n    lr: {lr}\n    width: 8\nrun:\n  id: {name}\n"
        )
    runs = [load_run(tmp_path / "exp" / n) for n in ("a", "b")]
    header, rows, differing = summarize(runs, ["val/elbo"], maximize={"val/elbo"})
    assert differing == ["model.init_args.lr"]  # width is equal, run.id is ignored
    assert header == ["run", "model.lr", "val/elbo final", "val/elbo best"]
    assert rows == [["exp/a", "0.1", "-4", "-3"], ["exp/b", "0.01", "-2.5", "-2"]]
    assert flatten({"a": {"b": [1, 2]}}) == {"a.b": [1, 2]}


def _fake_run(path: Path, class_path: str, elbo: list[float], lr: float) -> Path:
    path.mkdir(parents=True)
    rows = ["step,epoch,val/elbo,val/loss"] + [f"{i},0,{v},{-v}" for i, v in enumerate(elbo)]
    (path / "metrics.csv").write_text("\n".join(rows) + "\n")
    (path / "config.yaml").write_text(json.dumps({"model": {"class_path": class_path, "init_args": {"lr": lr}}}))
    return path


def test_compare_reads_the_monitor_from_the_contract_class(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """VAE's monitor is ``("val/elbo", "max")``: compare shows that metric, best = maximum."""
    a = _fake_run(tmp_path / "runs" / "vae" / "a", "lightning_gen.models.VAE", [-90.0, -70.0, -80.0], 1e-3)
    b = _fake_run(tmp_path / "runs" / "vae" / "b", "lightning_gen.models.VAE", [-95.0, -85.0], 1e-2)
    main(["compare", str(a), str(b), "--plot", ""])
    out = capsys.readouterr().out
    row_a = next(line for line in out.splitlines() if "vae/a" in line)
    assert "val/elbo best" in out and "val/loss" not in out
    assert "-70" in row_a and "-80" in row_a  # best (max) and final
    assert "0.001" in row_a  # the differing config key


def test_compare_of_an_unimportable_class_falls_back_to_val_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    a = _fake_run(tmp_path / "a" / "r1", "nowhere.Model", [1.0, 2.0], 1.0)
    main(["compare", str(a), "--plot", ""])
    out = capsys.readouterr().out
    assert "val/elbo best" in out and "val/loss best" in out
