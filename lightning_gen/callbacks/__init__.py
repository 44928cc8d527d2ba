"""Evaluation and sample logging, as Lightning callbacks (never in model code)."""
from lightning_gen.callbacks.samples import SampleGrid
from lightning_gen.callbacks.text_metrics import TextMetrics

__all__ = ["SampleGrid", "TextMetrics"]
