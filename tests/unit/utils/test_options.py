"""``parse_options``: the shell spellings of a command line parse into the options dataclass."""

from __future__ import annotations

import pytest

from lightning_gen.commands.compare import CompareOptions
from lightning_gen.commands.evaluate import EvaluateOptions
from lightning_gen.commands.sample import SampleOptions
from lightning_gen.commands.sweep import SweepOptions
from lightning_gen.utils.options import parse_options


def test_shell_spellings_parse_into_the_dataclass() -> None:
    args = parse_options(
        EvaluateOptions,
        ["--fake", "f/", "--real", "r/", "--metrics", "fid", "kid", "--compare_torch_fidelity", "--num_real", "5"],
        "t",
        aliases={"--fake": "--images"},
    )
    assert (args.images, args.real, args.metrics, args.compare_torch_fidelity, args.num_real) == (
        "f/",
        "r/",
        ["fid", "kid"],
        True,
        5,
    )
    assert parse_options(
        EvaluateOptions, ["--metrics", "[fid,pr]", "--compare_torch_fidelity", "false"], "t"
    ).metrics == ["fid", "pr"]
    args = parse_options(CompareOptions, ["a", "b", "--maximize", "--metrics", "val/x"], "t", positional="runs")
    assert (args.runs, args.maximize, args.metrics) == (["a", "b"], [], ["val/x"])
    args = parse_options(
        SweepOptions,
        ["s.yaml", "--no-check", "--sweep-id", "abc", "--seed", "-3"],
        "t",
        positional="file",
        aliases={"--sweep-id": "--sweep_id", "--no-check": "--no_check"},
    )
    assert (args.file, args.check, args.sweep_id, args.seed) == ("s.yaml", False, "abc", -3)
    assert parse_options(SampleOptions, ["--ckpt", "c", "--prompt", "ROMEO:", "--top_k", "null"], "t").top_k is None
    with pytest.raises(SystemExit):
        parse_options(EvaluateOptions, ["--split", "nope"], "t")
