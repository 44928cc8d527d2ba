"""Issue 23: every result kept and every record true (evaluate, resume, compare, precision, export)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from gen_common.errors import ConfigError, LightningGenError
from lightning_gen.__main__ import main
from lightning_gen.commands.compare import expand, load_run
from lightning_gen.commands.evaluate import EvaluateOptions, record_path, write_record
from lightning_gen.runs.resume import Resume, check_resume_config, keep_config_history, resume_config_changes

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def _run(path: Path, rows: str) -> Path:
    path.mkdir(parents=True)
    (path / "metrics.csv").write_text(rows)
    (path / "config.yaml").write_text("model:\n  class_path: lightning_gen.models.VAE\n")
    return path


def test_evaluations_of_one_checkpoint_get_their_own_records(tmp_path: Path) -> None:
    ckpt = tmp_path / "runs" / "exp" / "r1" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    first, second = (record_path(EvaluateOptions(ckpt=str(ckpt))) for _ in range(2))
    assert first != second and first.parent.parent == second.parent.parent == ckpt.parent.parent / "eval"
    write_record({"values": {"fid": 1.0}}, first)
    write_record({"values": {"fid": 2.0}}, second)
    os.utime(second, ns=(first.stat().st_mtime_ns + 1_000_000,) * 2)  # written later, also on a coarse clock
    with pytest.raises(ConfigError, match="already exists .* not written over it"):
        write_record({"values": {"fid": 3.0}}, first)  # a concurrent writer of the same name loses, the file stays
    assert '"fid": 1.0' in first.read_text() and '"fid": 2.0' in second.read_text()
    run = load_run(_run(tmp_path / "runs" / "exp" / "r2", "step,epoch,val/elbo\n0,0,-1\n"))
    assert run.evaluations == []
    (ckpt.parent.parent / "metrics.csv").write_text("step,epoch,val/elbo\n0,0,-1\n")
    assert [m for _, m in load_run(ckpt.parent.parent).evaluations] == [{"fid": 1.0}, {"fid": 2.0}]


def test_compare_leaves_out_a_row_cut_by_a_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path / "exp" / "r1", "step,epoch,val/elbo\n0,0,-410.5\n1,7,-40")  # `-405.366` cut mid-write
    assert load_run(run).history["val/elbo"] == [(0, -410.5)]
    assert "1 row(s) cut short" in capsys.readouterr().err


def test_compare_finds_runs_under_a_runs_root_and_skips_non_runs_of_a_glob(tmp_path: Path) -> None:
    a = _run(tmp_path / "runs" / "exp" / "a", "step,epoch,val/elbo\n0,0,-1\n")
    b = _run(tmp_path / "runs" / "other" / "b", "step,epoch,val/elbo\n0,0,-2\n")
    _run(a / "eval" / "test-1", "step,epoch,test/elbo\n0,0,-1\n")  # an evaluation sub-run belongs to its run
    (a / "checkpoints").mkdir()
    (a / "checkpoints" / "last.ckpt").write_bytes(b"")
    root = tmp_path / "runs"
    assert expand([str(root)]) == [a.resolve(), b.resolve()]
    assert expand([f"{root}/**"]) == [a.resolve(), b.resolve()]


def test_export_refuses_an_existing_out_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "G.pt"
    out.write_bytes(b"earlier export")
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt", str(tmp_path / "missing.ckpt"), "--out", str(out)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and out.read_bytes() == b"earlier export"
    assert "already exists" in err and "`--force`" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["export", "--ckpt", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert "is a folder" in err and "Traceback" not in err
    with pytest.raises(SystemExit):  # --force passes the output check; the missing checkpoint is refused next
        main(["export", "--ckpt", str(tmp_path / "missing.ckpt"), "--out", str(out), "--force"])
    assert "does not exist" in capsys.readouterr().err and out.read_bytes() == b"earlier export"


def test_resume_with_a_changed_optimizer_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "r1"
    (run_dir / "checkpoints").mkdir(parents=True)
    saved = {
        "model": {"class_path": "lightning_gen.models.VAE", "init_args": {"optimizer": {"init_args": {"lr": 0.001}}}},
        "data": {"init_args": {"batch_size": 64, "num_workers": 2}},
        "trainer": {"max_epochs": 1},
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    resume = Resume(run_dir / "checkpoints" / "last.ckpt", "r1", 3, {"global_step": 3})
    more_epochs_and_workers = {
        **saved,
        "trainer": {"max_epochs": 5},
        "data": {"init_args": {"batch_size": 64, "num_workers": 0}},
    }
    check_resume_config(resume, more_epochs_and_workers)  # limits and loader settings may change
    changed = {**saved, "model": {**saved["model"], "init_args": {"optimizer": {"init_args": {"lr": 0.0005}}}}}
    assert resume_config_changes(saved, changed) == [("model.init_args.optimizer.init_args.lr", 0.001, 0.0005)]
    with pytest.raises(
        LightningGenError, match=r"`model.init_args.optimizer.init_args.lr` 0.001 -> 0.0005.*--init_from"
    ):
        check_resume_config(resume, changed)
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
    kept = keep_config_history(run_dir, resume)
    assert (
        kept == run_dir / "history" / "config-at-step-3.yaml" and kept.read_bytes() == before[run_dir / "config.yaml"]
    )


def test_the_saved_config_records_the_precision_that_ran() -> None:
    from lightning_gen.cli.trainer import build_cli

    args = ["--config", str(EXPERIMENTS / "vae_mnist.yaml"), "--config", str(EXPERIMENTS / "debug.yaml")]
    cli = build_cli(
        [*args, "--trainer.accelerator=cpu", "--trainer.precision=16-mixed", "--run.wandb=disabled"], run=False
    )
    assert str(cli.trainer.precision) == "bf16-mixed" and cli.config.trainer.precision == "bf16-mixed"


def test_an_unknown_command_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fitt"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Did you mean `fit`?" in err
    assert all(
        name in err
        for name in ("fit", "validate", "test", "predict", "evaluate", "sample", "export", "compare", "sweep")
    )


@pytest.mark.slow  # two real evaluate processes, ~12 s
def test_two_evaluations_started_together_both_keep_their_record(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Issue 23 item 1 as a user hits it: two ``evaluate`` processes of one checkpoint, seeds 0 and 1, started at
    once with the default record path. Both records survive, each with its own values and protocol card, and
    ``compare`` lists both."""
    import json

    import lightning as L

    from lightning_gen.models import VAE
    from tests.helpers.metrics import LABELLED_SHAPE, labelled_blobs
    from tests.helpers.ops import popen_cli

    run = tmp_path / "runs" / "blobs" / "r1"
    L.seed_everything(0)
    model = VAE(image_shape=LABELLED_SHAPE, latent_dim=4, widths=(8, 16))
    trainer = L.Trainer(
        accelerator="cpu", max_steps=2, limit_val_batches=0, logger=False, enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, labelled_blobs())
    trainer.save_checkpoint(run / "checkpoints" / "last.ckpt")
    data = {"class_path": "datamodules.SyntheticImageDataModule", "init_args": {"image_shape": list(LABELLED_SHAPE)}}
    (run / "config.yaml").write_text(
        yaml.safe_dump({"model": {"class_path": "lightning_gen.models.VAE"}, "data": data})
    )
    (run / "metrics.csv").write_text("step,epoch,val/elbo\n1,0,-500.0\n")
    common = ["--metrics", "fd_classifier", "--num_samples", "24", "--num_real", "24", "--classifier_epochs", "1"]
    procs = [
        popen_cli(
            ["evaluate", "--ckpt", str(run / "checkpoints" / "last.ckpt"), "--seed", str(seed), *common], tmp_path
        )
        for seed in (0, 1)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    records = sorted((run / "eval").glob("evaluate-*/evaluation.json"))
    assert len(records) == 2 and all(f"wrote {r}" in "".join(outputs) for r in records)
    reports = [json.loads(r.read_text()) for r in records]
    assert sorted(r["options"]["seed"] for r in reports) == [0, 1]
    values = [r["values"]["fd_classifier"] for r in reports]
    assert values[0] != values[1]  # different noise, different samples: two results, both kept
    assert all(r["cards"]["fd_classifier"]["n_fake"] == 24 for r in reports)
    assert sorted(m["fd_classifier"] for _, m in load_run(run).evaluations) == sorted(values)
    main(["compare", "--runs", str(run)])
    table = capsys.readouterr().out
    assert "2 evaluations" in table
