"""Keyed random generators: a ``torch.Generator`` that is a pure function of a tuple of integers."""

from __future__ import annotations

import numpy as np
import torch


def keyed_generator(device: torch.device | str, *key: int) -> torch.Generator:
    """A fresh generator on ``device`` seeded from ``key`` (non-negative integers) through ``SeedSequence``.

    It has no state beyond its key: the same key gives the same numbers in any process, at any time,
    and drawing from it never touches the global RNG.
    """
    words = np.random.SeedSequence([int(k) for k in key]).generate_state(2, np.uint32)
    seed = (int(words[0]) << 31) ^ int(words[1])  # < 2**63
    return torch.Generator(device=device).manual_seed(seed)
