"""Helpers about ``nn.Module`` state that several callers need."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Run the block with ``module`` in eval mode; afterwards every submodule gets back its own mode.

    Restores even when the block raises, and restores per submodule (a frozen, eval-mode part of a
    training model stays in eval mode), unlike ``module.train(was_training)``.
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training
