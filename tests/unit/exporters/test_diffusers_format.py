"""``--format diffusers``: diffusers' own pipeline (or UNet + scheduler) samples what our sampler samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lightning_gen.exporters import export_folder
from tests.helpers.exports import diffusion_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm_solver++"])
def test_ddpm_pipeline_samples_equal_ours(tmp_path: Path, sampler: str) -> None:
    from diffusers import DDPMPipeline

    ckpt, net = diffusion_checkpoint(tmp_path / "last.ckpt", sampler=sampler, steps=8)
    result = export_folder(ckpt, tmp_path / "out", "diffusers")
    assert "DDPMPipeline.from_pretrained" in result.message and "num_inference_steps=8" in result.message
    marker = json.loads((tmp_path / "out" / "lightning_gen_export.json").read_text())
    assert marker["num_inference_steps"] == 8 and marker["ema"] and marker["global_step"] == 5
    pipe = DDPMPipeline.from_pretrained(tmp_path / "out")
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(4, generator=torch.Generator().manual_seed(3), num_inference_steps=8, output_type="pt").images
    ours = net.sample(4, generator=torch.Generator().manual_seed(3))
    assert ours.std() > 0.1  # not a constant image
    assert (theirs - ours).abs().max().item() <= 1e-5


def test_conditional_model_exports_unet_and_scheduler(tmp_path: Path) -> None:
    """No pipeline (DDPMPipeline passes no labels): the UNet and scheduler, which sample our images given labels."""
    import diffusers

    ckpt, net = diffusion_checkpoint(tmp_path / "last.ckpt", sampler="ddim", steps=8, num_classes=3)
    result = export_folder(ckpt, tmp_path / "out", "diffusers")
    assert "class-conditional" in result.message and not (tmp_path / "out" / "model_index.json").exists()
    marker = json.loads((tmp_path / "out" / "lightning_gen_export.json").read_text())
    assert marker["null_label"] == 3 and marker["scheduler"] == "DDIMScheduler"
    unet = diffusers.UNet2DModel.from_pretrained(tmp_path / "out", subfolder="unet").eval()
    scheduler = getattr(diffusers, marker["scheduler"]).from_pretrained(tmp_path / "out", subfolder="scheduler")
    scheduler.set_timesteps(marker["num_inference_steps"])
    labels = torch.tensor([0, 1, 2, 0])
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 1, 8, 8, generator=g)
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(unet(x, t, class_labels=labels).sample, t, x, generator=g).prev_sample
    theirs = (x / 2 + 0.5).clamp(0, 1)
    ours = net.sample(4, generator=torch.Generator().manual_seed(5), labels=labels, guidance_scale=1.0)
    assert (theirs - ours).abs().max().item() <= 1e-5
