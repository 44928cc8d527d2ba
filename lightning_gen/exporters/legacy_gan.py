"""GAN checkpoints written before the generator contract (``gan_generator_config``, no export entry).

They still export (``--format torch``: the old file format below, and every folder format), and
their old export files still load (:func:`legacy_gan_generator`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gen_common.errors import LightningGenError

#: format of GAN exports made before the contract (``gan_generator_config`` checkpoints)
LEGACY_GAN_FORMAT = "lightning_gen.gan_generator/1"


def legacy_gan_payload(checkpoint: dict[str, Any], ckpt_path: Path, use_ema: bool) -> dict[str, Any]:
    """The export of a GAN checkpoint written before the contract (``gan_generator_config``)."""
    from lightning_gen.nets.gan import build_generator

    state = checkpoint["state_dict"]
    ema_prefix, plain_prefix = "generator_ema.module.", "generator."
    if use_ema and not any(k.startswith(ema_prefix) for k in state):
        raise LightningGenError(
            f"'{ckpt_path}' has no EMA generator (trained with ema_decay: null). Fix: add `--no-ema`."
        )
    prefix = ema_prefix if use_ema else plain_prefix
    weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    config = dict(checkpoint["gan_generator_config"])
    architecture = config.pop("architecture")
    build_generator(architecture, **config).load_state_dict(weights)  # refuse to write a file that cannot be loaded
    return {
        "format": LEGACY_GAN_FORMAT,
        "architecture": architecture,
        "kwargs": config,
        "ema": use_ema,
        "global_step": checkpoint.get("global_step"),
        "source_checkpoint": str(ckpt_path),
        "state_dict": weights,
    }


def legacy_gan_generator(payload: dict[str, Any]) -> Any:
    """The generator of a pre-contract GAN export (its own ``sample(n)`` in ``[0, 1]``); ``info`` = the file's metadata."""
    from lightning_gen.nets.gan import build_generator

    net = build_generator(payload["architecture"], **payload["kwargs"])
    net.load_state_dict(payload["state_dict"])
    net.info = {k: v for k, v in payload.items() if k != "state_dict"}
    return net
