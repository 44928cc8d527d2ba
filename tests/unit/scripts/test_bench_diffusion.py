"""scripts/bench_diffusion.py: both sides are configured alike, before anything trains (no training here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers.scripts import load_script


def test_steps_become_whole_epochs_of_full_batches() -> None:
    bench = load_script("bench_diffusion")
    assert bench.plan_for(20) == bench.Plan(steps=20, epochs=1, images=1280)
    assert bench.plan_for(3000) == bench.Plan(steps=3000, epochs=4, images=48000)  # 4 x 750 batches of 64
    assert bench.plan_for(2000).images == 32000 and bench.plan_for(2000).epochs == 4  # 3 epochs would not divide


def test_ours_and_the_diffusers_script_get_the_same_unet_schedule_optimizer_ema_batch_and_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("accelerate", reason="the `bench` extra: pip install -e '.[bench]'")
    pytest.importorskip("datasets", reason="the `bench` extra: pip install -e '.[bench]'")
    bench = load_script("bench_diffusion")
    plan = bench.plan_for(20)
    cli = bench.instantiate_ours(bench.ours_fit_args(tmp_path / "png", plan.steps, 0, tmp_path / "runs"))
    cli.model.diffusion.net.save_config(tmp_path / "unet")
    argv = bench.script_args(tmp_path / "png", tmp_path / "out", tmp_path / "unet", plan, tmp_path / "cache")
    rows = {what: (ours, theirs) for what, ours, theirs in bench.parity_rows(cli, bench.parse_script_args(argv), plan)}

    for what, (ours, theirs) in rows.items():
        print(f"{what}: ours {ours} | script {theirs}")
        assert ours == theirs, what
    assert rows["UNet parameters"] == (280755, 280755)  # ddpm_mnist's UNet at 3 channels
    config = rows["UNet config"][0]
    assert config["block_out_channels"] == [16, 32, 32] and config["in_channels"] == config["out_channels"] == 3
    assert config["down_block_types"] == ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"]
    assert rows["learning rate at each step"][0] == [1e-3] * 20  # constant, no warm-up
    assert rows["EMA decay at each step"][0] == [0.0] + [0.995] * 19  # a copy at step 1, then 0.995
    assert rows["optimizer hyper-parameters"][0]["weight_decay"] == 0.0
    assert rows["optimizer steps"] == (20, 20) and rows["batch size"] == (64, 64)
    assert not (tmp_path / "runs").exists()  # instantiating our side wrote nothing
    bench.assert_parity(list((what, *pair) for what, pair in rows.items()))
    assert "| UNet parameters | 280755 | 280755 |" in capsys.readouterr().out

    # the check has teeth: the script's own defaults (AdamW betas 0.95/wd 1e-6, cosine warm-up, EMA warm-up) differ
    defaults = [a for a in argv if not a.startswith(("--adam", "--lr_", "--ema_power"))]
    default_rows = bench.parity_rows(cli, bench.parse_script_args(defaults), plan)
    differ = [what for what, ours, theirs in default_rows if ours != theirs]
    assert differ == ["optimizer hyper-parameters", "learning rate at each step", "EMA decay at each step"]
    with pytest.raises(SystemExit, match="differ in: optimizer hyper-parameters, learning rate at each step, EMA"):
        bench.assert_parity(default_rows)


def test_the_script_side_sampler_draws_the_images_lightning_gen_sample_draws(one_thread: None) -> None:
    """Same UNet, same seed: diffusers' DDIMPipeline (the script's side) gives our `sample`'s images exactly."""
    from lightning_gen.commands.evaluate import generated_images
    from lightning_gen.models import Diffusion
    from lightning_gen.nets.diffusion import NoiseSchedule, UNetConfig

    torch.manual_seed(0)
    model = Diffusion(
        image_shape=(3, 8, 8),
        unet=UNetConfig(widths=(8, 8), attention=(False, True)),
        schedule=NoiseSchedule(num_train_timesteps=20),
        ema_decay=None,
    ).eval()
    bench = load_script("bench_diffusion")
    theirs = bench.pipeline_samples(model.diffusion.net, model.diffusion.noise_scheduler, n=3, seed=5, steps=4)
    ours = generated_images(model, 3, bench.SAMPLE_CHUNK, 5, "cpu", sampler=bench.SAMPLER, steps=4)
    assert theirs.dtype == torch.uint8 and theirs.shape == (3, 3, 8, 8)
    assert torch.equal(theirs, ours)
    assert theirs.float().std() > 0  # not a constant image
