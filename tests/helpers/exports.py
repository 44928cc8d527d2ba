"""Tiny checkpoints as the families write them (weights under their prefix, export entry or hyper-parameters)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

#: a few lines of text for a byte-level BPE and a char vocabulary
TEXT = (
    "ROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\n"
    "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?\nDeny thy father and refuse thy name.\n\n"
) * 4


def perturb(module: torch.nn.Module, scale: float, seed: int = 0) -> None:
    """Add ``scale`` * N(0, 1) to every weight: outputs far from their zero-ish initialisation, ties broken."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def image_checkpoint(path: Path, builder: str, net: torch.nn.Module, kwargs: dict[str, Any]) -> Path:
    """A contract family's checkpoint: trained weights under ``net.``, EMA weights (= the same) under ``ema.module.``."""
    from lightning_gen.models.base import EXPORT_KEY, ExportSpec

    weights = net.state_dict()
    state = {f"net.{k}": v for k, v in weights.items()} | {f"ema.module.{k}": v for k, v in weights.items()}
    spec = ExportSpec(builder=builder, kwargs=kwargs, module="net", ema_module="ema.module")
    torch.save({"state_dict": state, "global_step": 5, EXPORT_KEY: dataclasses.asdict(spec)}, path)
    return path


def diffusion_checkpoint(
    path: Path, sampler: str = "ddim", steps: int = 8, num_classes: int | None = None
) -> tuple[Path, torch.nn.Module]:
    """A tiny (8x8, two levels) diffusion model's checkpoint, weights perturbed so samples are not trivial."""
    from lightning_gen.nets.diffusion import DenoisingDiffusion

    torch.manual_seed(0)
    net = DenoisingDiffusion(
        [1, 8, 8],
        num_classes,
        unet={"widths": [8, 16], "attention": [False, True], "norm_num_groups": 4},
        schedule={"num_train_timesteps": 100},
        sampling={"sampler": sampler, "steps": steps, "guidance_scale": 1.0},
    )
    perturb(net, 0.05)
    image_checkpoint(path, "lightning_gen.nets.diffusion.DenoisingDiffusion", net, net.export_kwargs())
    return path, net.eval()


def text_checkpoint(
    path: Path, tokenizer: Any, architecture: str = "gpt", bias: bool = False, scale: float = 0.3
) -> tuple[Path, Any]:
    """A tiny ``lightning_gen.models.GPT`` checkpoint as Lightning writes it (state_dict, hyper_parameters,
    the text datamodule's tokenizer), weights perturbed so greedy decoding wanders over the vocabulary."""
    from lightning_gen.models.gpt import GPT
    from lightning_gen.runs.checkpoints import CHECKPOINT_KEY

    torch.manual_seed(0)
    model = GPT(tokenizer.vocab_size, architecture, block_size=32, n_layer=2, n_head=2, n_embd=32, bias=bias)
    perturb(model, scale)
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "global_step": 7,
        CHECKPOINT_KEY: {"model_class": "lightning_gen.models.gpt.GPT"},
        "TextDataModule": {"tokenizer": tokenizer.to_dict()},
    }
    torch.save(checkpoint, path)
    return path, model.eval()
