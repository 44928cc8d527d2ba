"""``init_from`` pieces: misfits named by shape and key, EMA weights travel, legacy checkpoints are upgraded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightning_gen.runs.init_from import InitSource, state_dict_misfits

pytestmark = pytest.mark.usefixtures("one_thread")


def test_misfits_name_shapes_and_keys() -> None:
    saved = {"a": torch.zeros(2, 3), "b": torch.zeros(4), "only_saved": torch.zeros(1)}
    current = {"a": torch.zeros(2, 5), "b": torch.zeros(4), "only_model": torch.zeros(1)}
    assert state_dict_misfits(saved, current) == [
        "`a` is (2, 3) in the checkpoint but (2, 5) in this model",
        "`only_model` is missing from the checkpoint",
        "`only_saved` is in the checkpoint but not in this model",
    ]
    assert state_dict_misfits(saved, current, strict=False) == [
        "`a` is (2, 3) in the checkpoint but (2, 5) in this model"
    ]
    assert state_dict_misfits(current, current) == []


def test_ema_weights_travel_too() -> None:
    """Family-agnostic: a GAN's EMA generator is part of its state_dict and is copied like any weight."""
    from lightning_gen.models import GAN

    torch.manual_seed(0)
    source = GAN(image_shape=(1, 28, 28), latent_dim=8, g_width=8, d_width=8, ema_decay=0.9)
    with torch.no_grad():
        for p in source.ema.parameters():
            p.add_(1.0)  # the EMA differs from the generator, as after training
    target = GAN(image_shape=(1, 28, 28), latent_dim=8, g_width=8, d_width=8, ema_decay=0.9)
    InitSource(Path("source.ckpt"), "0" * 64, source.state_dict()).load_into(target)
    ema_keys = [k for k in source.state_dict() if k.startswith("ema.")]
    assert ema_keys and all(torch.equal(target.state_dict()[k], source.state_dict()[k]) for k in source.state_dict())


def test_checkpoint_from_before_the_contract_initialises_too() -> None:
    """Legacy keys (a GAN's ``generator_ema.*``) are upgraded as on resume, then checked and copied."""
    from lightning_gen.models import GAN

    torch.manual_seed(0)
    source = GAN(image_shape=(1, 28, 28), latent_dim=8, g_width=8, d_width=8, ema_decay=0.9)
    legacy = {
        ("generator_ema." + k[len("ema.") :] if k.startswith("ema.") else k): v for k, v in source.state_dict().items()
    }
    target = GAN(image_shape=(1, 28, 28), latent_dim=8, g_width=8, d_width=8, ema_decay=0.9)
    InitSource(Path("old.ckpt"), "0" * 64, legacy).load_into(target)
    assert all(torch.equal(target.state_dict()[k], v) for k, v in source.state_dict().items())
