"""The tool commands' options: every default from one source, each flag spelled one way."""

from __future__ import annotations

import dataclasses

from lightning_gen.commands.compare import CompareOptions
from lightning_gen.commands.evaluate import EvaluateOptions
from lightning_gen.commands.export import ExportOptions
from lightning_gen.commands.sample import SampleOptions
from lightning_gen.commands.sweep import SweepOptions
from lightning_gen.metrics.settings import EvalSettings, FeatureSettings
from lightning_gen.utils.sampling import SamplingOptions


def test_defaults_come_from_one_source() -> None:
    evaluate = EvaluateOptions()
    for name in ("num_samples", "num_real", "split", "seed", "sample_chunk", "batch_size"):
        assert getattr(evaluate, name) == getattr(EvalSettings(), name)
    for name in ("weights", "cache_dir", "precision"):
        assert getattr(evaluate, name) == getattr(FeatureSettings(), name)
    sample = SampleOptions(ckpt="x")
    for f in dataclasses.fields(SamplingOptions):
        assert getattr(sample, f.name) == getattr(SamplingOptions(), f.name)


def test_flags_are_spelled_one_way() -> None:
    """The same concept has the same flag in every command that takes it."""
    fields = {
        cls: {f.name for f in dataclasses.fields(cls)}
        for cls in (EvaluateOptions, SampleOptions, ExportOptions, CompareOptions, SweepOptions)
    }
    assert {"ckpt"} <= fields[EvaluateOptions] & fields[SampleOptions] & fields[ExportOptions]
    assert {"seed"} <= fields[EvaluateOptions] & fields[SampleOptions] & fields[SweepOptions]
    assert {"num_samples", "device"} <= fields[EvaluateOptions] & fields[SampleOptions]
    assert {"root", "storage"} <= fields[CompareOptions] & fields[SweepOptions]
    assert {"out"} <= fields[EvaluateOptions] & fields[ExportOptions]
    assert all("-" not in name for names in fields.values() for name in names)
