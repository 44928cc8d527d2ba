"""LitData shards: datamodules that stream images or token windows from a local folder or ``s3://``.

``lightning-gen prepare`` writes a shard set (:mod:`datamodules.streaming.write`);
:class:`ShardImageDataModule` and :class:`ShardTokenDataModule` train from it, resumable mid-epoch.
Needs the ``stream`` extra (LitData).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datamodules.streaming.images import ShardImageDataModule
    from datamodules.streaming.tokens import ShardTokenDataModule

# Imported on first use: LitData and Lightning load only when a shard datamodule is used.
_LAZY = {
    "ShardImageDataModule": "datamodules.streaming.images",
    "ShardTokenDataModule": "datamodules.streaming.tokens",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'datamodules.streaming' has no attribute {name!r}")


__all__ = ["ShardImageDataModule", "ShardTokenDataModule"]
