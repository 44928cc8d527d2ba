"""Multi-process strategies: a collective timeout in minutes, and the model's DDP options.

A rank that waits in a collective its peers never reach (a bug, a dead peer) would wait
Lightning's default 30 minutes and ignore SIGTERM meanwhile. The CLI turns the strategy names
``ddp``, ``ddp_spawn``, ``ddp_fork``, ``ddp_notebook`` (and their ``_find_unused_parameters_*``
forms), and ``auto`` when several devices or nodes are asked for, into the same
:class:`~lightning.pytorch.strategies.DDPStrategy` with ``timeout=run.collective_timeout_min``:
such a wait then ends in an error on every rank. The timeout must exceed the longest work one
rank does while the others wait: building an evaluation extractor on rank 0 (a cached MNIST
classifier is trained there once), rank 0's metric computation, writing a checkpoint.

A model that leaves parameters without gradients in some backward pass says so with the
contract's class attribute ``GenerativeModel.ddp_find_unused_parameters = True`` (the GAN: each of
its backward passes reaches one of its two nets); a strategy name that spells
``find_unused_parameters`` wins over it. A LightningModule outside the contract gets DDP's default. A
strategy given as an object (``class_path: ...DDPStrategy``) is used as it is.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from lightning.fabric.utilities.imports import _IS_INTERACTIVE
from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry

from gen_common.errors import ConfigError
from lightning_gen.models.base import GenerativeModel

#: strategy names that build a plain DDPStrategy (Lightning's registry entries)
DDP_NAMES = frozenset(name for name, entry in StrategyRegistry.items() if entry["strategy"] is DDPStrategy)


def _process_count(devices: Any, num_nodes: Any) -> int | None:
    """Processes the Trainer will start, when the config says it without asking the hardware."""
    nodes = int(num_nodes) if isinstance(num_nodes, int) else 1
    if isinstance(devices, (list, tuple)):
        return len(devices) * nodes
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, str) and "," in devices:
        return len([d for d in devices.split(",") if d.strip()]) * nodes
    if isinstance(devices, int) and devices > 0:
        return devices * nodes
    return None if nodes == 1 else nodes


def ddp_strategy(
    strategy: Any,
    timeout_min: float,
    model: GenerativeModel | type[GenerativeModel] | object = None,
    devices: Any = "auto",
    num_nodes: Any = 1,
    accelerator: Any = "auto",
) -> Any:
    """``strategy`` as a :class:`DDPStrategy` with the collective timeout, or unchanged when it is not DDP.

    Args:
        strategy: The Trainer's ``strategy`` value (a name or a Strategy object).
        timeout_min: Collective timeout in minutes (``run.collective_timeout_min``).
        model: The LightningModule (or its class); a :class:`GenerativeModel`'s ``ddp_find_unused_parameters`` is honoured.
        devices: The Trainer's ``devices`` (decides ``auto``).
        num_nodes: The Trainer's ``num_nodes``.
        accelerator: The Trainer's ``accelerator``; ``auto`` becomes DDP only for cpu/gpu/cuda/auto.
    """
    if not timeout_min > 0:
        raise ConfigError(f"`--run.collective_timeout_min` must be > 0 minutes, got {timeout_min}.")
    if not isinstance(strategy, str):
        return strategy
    name = strategy
    if name == "auto":
        count = _process_count(devices, num_nodes)
        if count is None or count < 2 or str(accelerator) not in ("auto", "cpu", "gpu", "cuda"):
            return strategy
        name = (
            "ddp" if (isinstance(num_nodes, int) and num_nodes > 1) or not _IS_INTERACTIVE else "ddp_fork"
        )  # Lightning's choice
    if name not in DDP_NAMES:
        return strategy
    params = dict(StrategyRegistry[name]["init_params"])
    in_contract = isinstance(model, GenerativeModel) or (isinstance(model, type) and issubclass(model, GenerativeModel))
    params.setdefault("find_unused_parameters", bool(model.ddp_find_unused_parameters) if in_contract else False)
    return DDPStrategy(timeout=timedelta(minutes=timeout_min), **params)
