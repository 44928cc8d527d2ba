"""Evaluation and sample logging, as Lightning callbacks (never in model code)."""

from lightning_gen.callbacks.image_metrics import FID, KID, ClassifierFD, ClassifierIS, InceptionScore, PrecisionRecall
from lightning_gen.callbacks.samples import SampleGrid
from lightning_gen.callbacks.text_metrics import TextMetrics

__all__ = [
    "FID",
    "KID",
    "PrecisionRecall",
    "InceptionScore",
    "ClassifierFD",
    "ClassifierIS",
    "SampleGrid",
    "TextMetrics",
]
