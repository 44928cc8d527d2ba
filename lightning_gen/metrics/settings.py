"""Evaluation settings, defined once: ``lightning-gen evaluate`` and the metric callbacks take their defaults here.

Light on purpose (no torch): ``lightning-gen evaluate --help`` reads these defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gen_common.errors import ConfigError

Precision = Literal["fp32", "bf16"]


@dataclass(frozen=True)
class EvalSettings:
    """What defines an evaluation (and goes into every protocol card).

    Args:
        num_samples: Generated images, exactly (split across ranks without padding).
        num_real: Real images: the first ``num_real`` of the split (``None``: all of it).
        split: Datamodule split of the real images: ``train``, ``val`` or ``test`` (``folder``: real
            images given directly, e.g. ``lightning-gen evaluate --real DIR``).
        seed: Noise seed; chunk ``c`` of samples uses a seed derived from ``(seed, c)``.
        sample_chunk: Images generated per call of ``sample`` (a chunk's noise is fixed by the seed).
        batch_size: Images per extractor forward (does not change results).
    """

    num_samples: int = 10000
    num_real: int | None = None
    split: str = "test"
    seed: int = 0
    sample_chunk: int = 100
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.num_samples < 2:
            raise ConfigError(f"`num_samples` must be >= 2 (a covariance needs two images), got {self.num_samples}.")
        if self.num_real is not None and self.num_real < 2:
            raise ConfigError(f"`num_real` must be >= 2 or null (the whole split), got {self.num_real}.")
        if self.split not in ("train", "val", "test", "folder"):
            raise ConfigError(f"`split` must be 'train', 'val' or 'test', got {self.split!r}.")
        if self.sample_chunk < 1 or self.batch_size < 1:
            raise ConfigError(
                f"`sample_chunk` and `batch_size` must be >= 1, got {self.sample_chunk} and {self.batch_size}."
            )


@dataclass(frozen=True)
class FeatureSettings:
    """Where feature-extractor weights come from and where caches live.

    Args:
        weights: Inception weights: ``auto`` (official if reachable, else the offline port), ``official``,
            ``offline`` or a file path.
        cache_dir: Cache of real features, weights and classifiers (``None``: the user cache).
        precision: Inception precision; ``bf16`` (autocast) changes the numbers (see the protocol card).
    """

    weights: str = "auto"
    cache_dir: str | None = None
    precision: Precision = "fp32"
