"""Evaluation and sample logging, as Lightning callbacks (never in model code)."""
from lightning_gen.callbacks.samples import SampleGrid

__all__ = ["SampleGrid"]
