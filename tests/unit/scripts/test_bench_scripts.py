"""The benchmark scripts run against today's code (a refactor that breaks their imports fails here)."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.scripts import load_script


@pytest.mark.slow  # Inception on both paths, ~5 s
def test_bench_fid_times_torch_fidelity_and_ours_on_the_same_images(
    capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    load_script("bench_fid").main(["--n", "4", "--batch_size", "4", "--precisions", "fp32"])
    out = capsys.readouterr().out
    table = {
        line.split()[0] + (" " + line.split()[1] if line.startswith("ours") else ""): line.split()
        for line in out.splitlines()
        if line.startswith(("torch-fidelity ", "ours fp32 "))
    }
    assert set(table) == {"torch-fidelity", "ours fp32"}
    max_feature_diff = float(table["ours fp32"][-1])
    assert max_feature_diff < 1e-4  # the same pool3 features, fp32 against torch-fidelity


def test_bench_sampling_counts_images_per_second(one_thread: None) -> None:
    from lightning_gen.models import Diffusion
    from lightning_gen.nets.diffusion import NoiseSchedule, UNetConfig

    model = Diffusion(
        image_shape=(1, 8, 8),
        unet=UNetConfig(widths=(8, 8), attention=(False, False)),
        schedule=NoiseSchedule(num_train_timesteps=20),
        ema_decay=None,
    ).eval()
    bench = load_script("bench_sampling")
    fast = bench.images_per_second(model, n=4, batch=4, sampler="ddim", steps=2, device="cpu")
    slow = bench.images_per_second(model, n=4, batch=4, sampler="ddpm", steps=20, device="cpu")
    assert fast > slow > 0  # 2 denoising steps against 20
    assert torch.get_num_threads() == 1
