"""``ddpm_mnist.yaml`` + ``debug.yaml`` for 4 steps through ``lightning-gen fit``, then ``evaluate`` of its
checkpoint; a UNet too deep for the image size is one paragraph."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.helpers.cli import run_main
from tests.helpers.ops import train_rows
from tests.helpers.paths import EXPERIMENTS

FIT_ARGS = [
    "fit",
    "--config", str(EXPERIMENTS / "ddpm_mnist.yaml"),
    "--config", str(EXPERIMENTS / "debug.yaml"),
    "--trainer.limit_train_batches=4",
    "--trainer.val_check_interval=2",
    "--trainer.limit_val_batches=1",
    "--trainer.log_every_n_steps=1",
    "--model.init_args.sampling.steps=2",  # the grid's sampler: 2 DDIM steps instead of 50
    "--run.wandb=disabled",
    "--run.id=t",
]  # fmt: skip


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ddpm_mnist.yaml`` + ``debug.yaml``, 4 steps, through the CLI (in this process); its run dir."""
    cwd = tmp_path_factory.mktemp("ddpm_mnist")
    proc = run_main(FIT_ARGS, cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd / "runs" / "debug" / "ddpm_mnist" / "t"


@pytest.mark.slow  # minutes on 2 cores (the default suite keeps one DDP run: test_experiments_matrix)
def test_cli_fit_of_ddpm_mnist_leaves_checkpoint_metrics_and_grids(mnist_run: Path) -> None:
    assert (mnist_run / "checkpoints" / "last.ckpt").is_file()
    rows = train_rows(mnist_run / "metrics.csv")
    assert [int(r["step"]) for r in rows if r.get("train/loss")] == [0, 1, 2, 3]
    val = [float(r["val/loss"]) for r in rows if r.get("val/loss")]
    assert len(val) == 2 and all(0 < v < 10 for v in val)
    assert sorted(p.name for p in (mnist_run / "samples").glob("*.png")) == [
        "samples_step0000002.png",
        "samples_step0000004.png",
    ]
    ckpt = torch.load(mnist_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4 and any(k.startswith("ema.module.") for k in ckpt["state_dict"])


@pytest.mark.slow
def test_evaluate_ckpt_of_a_diffusion_run(mnist_run: Path) -> None:
    out = mnist_run / "eval.json"
    proc = run_main(
        ["evaluate", "--ckpt", str(mnist_run / "checkpoints" / "last.ckpt"), "--metrics", "fid", "kid",
         "--num_samples", "16", "--num_real", "16", "--kid_subset_size", "8", "--sample_chunk", "8", "--out", str(out)],
        mnist_run,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    values = json.loads(out.read_text())["values"]
    assert values["fid"] > 0 and math.isfinite(values["fid"]) and math.isfinite(values["kid_mean"])


def test_bad_unet_for_the_image_size_is_one_paragraph(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from lightning_gen.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(
            [
                *FIT_ARGS,
                "--model.init_args.unet.widths=[8,16,16,16]",
                "--model.init_args.unet.attention=[false,false,false,false]",
            ]
        )
    err = capsys.readouterr().err
    assert exc.value.code == 1
    assert (
        "lightning-gen: error: `model.init_args.unet.widths` has 4 levels" in err
        and "Use at most 3 levels for 28x28 images." in err
    )
    assert "Traceback" not in err
    assert not list(tmp_path.rglob("*.ckpt"))
