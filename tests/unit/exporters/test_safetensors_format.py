"""``--format safetensors``: every family as ``model.safetensors`` + JSON, rebuilt without unpickling anything."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from lightning_gen.commands.export import load_generator
from lightning_gen.exporters import export_folder
from tests.helpers.exports import TEXT, diffusion_checkpoint, image_checkpoint, perturb, text_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def _no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any unpickling (torch.load, pickle) from here on fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the safetensors export was unpickled")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)


def _image_checkpoint(tmp_path: Path, family: str) -> tuple[Path, torch.nn.Module]:
    if family == "diffusion":
        return diffusion_checkpoint(tmp_path / "last.ckpt", steps=4)
    torch.manual_seed(0)
    if family == "vae":
        from lightning_gen.nets.conv_vae import ConvVAE

        net = ConvVAE([1, 16, 16], [8, 16], 4)
        builder, kwargs = "lightning_gen.nets.conv_vae.ConvVAE", net.export_kwargs()
    else:
        from lightning_gen.nets.gan import build_generator

        kwargs = {"architecture": "dcgan", "image_shape": [1, 28, 28], "latent_dim": 8, "width": 8, "num_classes": 2}
        net, builder = build_generator(**kwargs), "lightning_gen.nets.gan.build_generator"
    perturb(net, 0.05)
    return image_checkpoint(tmp_path / "last.ckpt", builder, net, kwargs), net.eval()


@pytest.mark.parametrize("family", ["vae", "gan", "diffusion"])
def test_image_families_sample_alike_from_safetensors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, family: str
) -> None:
    from safetensors import safe_open

    ckpt, net = _image_checkpoint(tmp_path, family)
    result = export_folder(ckpt, tmp_path / "out", "safetensors")
    assert f"exported the {family} EMA weights to {tmp_path / 'out' / 'model.safetensors'}" in result.message
    with safe_open(tmp_path / "out" / "model.safetensors", "pt") as f:  # the header alone rebuilds the net
        assert json.loads(f.metadata()["lightning_gen_export"])["family"] == family
    _no_unpickling(monkeypatch)
    loaded = load_generator(tmp_path / "out")  # a folder: the safetensors export
    assert type(loaded) is type(net) and not loaded.training
    ours = net.sample(3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded.sample(3, generator=torch.Generator().manual_seed(0)), ours)


@pytest.mark.parametrize("architecture", ["gpt", "lstm"])
def test_text_families_from_safetensors_keep_the_tie_and_the_tokenizer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, architecture: str
) -> None:
    from datamodules.text.tokenizers import CharTokenizer, Tokenizer
    from lightning_gen.exporters.safetensors_format import load_safetensors

    chars = CharTokenizer.from_text(TEXT)
    ckpt, model = text_checkpoint(tmp_path / "last.ckpt", chars, architecture=architecture)
    export_folder(ckpt, tmp_path / "out", "safetensors", use_ema=False)
    marker = json.loads((tmp_path / "out" / "lightning_gen_export.json").read_text())
    _no_unpickling(monkeypatch)
    net = load_safetensors(tmp_path / "out")
    idx = torch.tensor([chars.encode("ROMEO:\nBut, soft!")])
    assert torch.equal(net(idx), model(idx))
    if architecture == "gpt":
        assert marker["tied"] == {"lm_head.weight": "wte.weight"} and net.lm_head.weight is net.wte.weight
    assert Tokenizer.load(tmp_path / "out" / "lightning_gen_tokenizer.json").to_dict() == chars.to_dict()
