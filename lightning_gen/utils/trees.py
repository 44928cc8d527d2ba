"""Nested configs as flat ``a.b.c`` keys: what ``compare`` shows and a resume checks."""

from __future__ import annotations

from typing import Any


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"model": {"init_args": {"lr": 1}}}`` -> ``{"model.init_args.lr": 1}`` (lists stay values)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def short_key(key: str) -> str:
    """``model.init_args.optimizer.init_args.lr`` -> ``model.optimizer.lr``: the name ``compare`` and W&B show."""
    return key.replace(".init_args", "")
