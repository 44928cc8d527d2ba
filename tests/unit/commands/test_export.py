"""``lightning-gen export``: the contract payload, EMA weights by default, one paragraph without an export entry, old GAN checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from lightning_gen.__main__ import main
from lightning_gen.commands.export import load_generator


def _contract_checkpoint(path: Path, ema: bool) -> tuple[Path, dict[str, torch.Tensor]]:
    """A checkpoint as a contract family writes it: weights under ``net.`` and the export entry."""
    from lightning_gen.models.base import EXPORT_KEY, ExportSpec
    from lightning_gen.nets.dcgan import DCGANGenerator

    kwargs = {"image_shape": [1, 28, 28], "latent_dim": 8, "width": 8, "num_classes": None}
    torch.manual_seed(0)
    weights = DCGANGenerator(**kwargs).state_dict()
    state = {f"net.{k}": v for k, v in weights.items()}
    if ema:
        state |= {f"ema.module.{k}": v + 1 for k, v in weights.items() if v.is_floating_point()}
    spec = ExportSpec(
        builder="lightning_gen.nets.dcgan.DCGANGenerator",
        kwargs=kwargs,
        module="net",
        ema_module="ema.module" if ema else None,
    )
    torch.save({"state_dict": state, "global_step": 3, EXPORT_KEY: dataclasses.asdict(spec)}, path)
    return path, weights


def test_export_uses_the_contract_payload(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt, weights = _contract_checkpoint(tmp_path / "last.ckpt", ema=False)
    main(["export", "--ckpt", str(ckpt), "--no_ema"])
    assert capsys.readouterr().out.strip() == f"exported generator to {tmp_path / 'last.generator.pt'}"
    net = load_generator(tmp_path / "last.generator.pt")
    assert not net.training and all(torch.equal(net.state_dict()[k], v) for k, v in weights.items())
    with pytest.raises(SystemExit) as exc:  # no EMA in the checkpoint: one paragraph, no file
        main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "ema.pt")])
    assert exc.value.code == 1 and not (tmp_path / "ema.pt").exists()
    assert capsys.readouterr().err.strip() == (
        f"lightning-gen: error: {ckpt} has no EMA weights (trained with ema_decay: null). Fix: add `--no-ema`."
    )


def test_export_takes_the_ema_weights_by_default(tmp_path: Path) -> None:
    ckpt, weights = _contract_checkpoint(tmp_path / "last.ckpt", ema=True)
    main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "G.pt")])
    net = load_generator(tmp_path / "G.pt")
    name = next(k for k, v in weights.items() if v.is_floating_point())
    assert torch.equal(net.state_dict()[name], weights[name] + 1)


def test_export_of_a_family_without_export_entry_is_one_paragraph(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "vae.ckpt")
    with pytest.raises(SystemExit):
        main(["export", "--ckpt", str(tmp_path / "vae.ckpt"), "--out", str(tmp_path / "x.pt")])
    err = capsys.readouterr().err
    assert "has no 'lightning_gen_export' entry" in err and "Traceback" not in err and not (tmp_path / "x.pt").exists()


def test_export_of_a_gan_checkpoint_from_before_the_contract(tmp_path: Path) -> None:
    """Old GAN checkpoints (``gan_generator_config``, no export entry) still export and sample."""
    from lightning_gen.nets.gan import build_generator

    config = {"architecture": "dcgan", "image_shape": [1, 28, 28], "latent_dim": 8, "width": 8, "num_classes": None}
    kwargs = {k: v for k, v in config.items() if k != "architecture"}
    torch.manual_seed(0)
    weights = build_generator("dcgan", **kwargs).state_dict()
    state = {f"generator_ema.module.{k}": v for k, v in weights.items()} | {
        f"generator.{k}": v for k, v in weights.items()
    }
    torch.save({"state_dict": state, "global_step": 7, "gan_generator_config": config}, tmp_path / "old.ckpt")
    main(["export", "--ckpt", str(tmp_path / "old.ckpt"), "--out", str(tmp_path / "G.pt")])
    generator = load_generator(tmp_path / "G.pt")
    assert generator.info["global_step"] == 7 and generator.info["ema"]
    images = generator.sample(3, generator=torch.Generator().manual_seed(0))
    assert images.shape == (3, 1, 28, 28) and 0.0 <= images.min() and images.max() <= 1.0
