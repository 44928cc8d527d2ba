"""Tool commands (evaluate, sample, export, compare, sweep): one typed source of options, a light
``--help``, and the helpers they share (atomic write, ranks, tokenizer lookup, class import)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gen_common.atomic import atomic_write
from gen_common.ranks import global_rank, rank_and_world
from lightning_gen.__main__ import main
from lightning_gen.commands.compare import CompareOptions
from lightning_gen.commands.evaluate import EvaluateOptions
from lightning_gen.commands.export import ExportOptions, load_generator
from lightning_gen.commands.sample import SampleOptions
from lightning_gen.commands.sweep import SweepOptions
from lightning_gen.metrics.settings import EvalSettings, FeatureSettings
from lightning_gen.utils.options import parse_options
from lightning_gen.utils.sampling import SamplingOptions

REPO = Path(__file__).resolve().parents[1]


def test_help_and_tool_help_do_not_import_lightning() -> None:
    """``lightning-gen --help`` and every ``<tool> --help`` (and a whole `compare`) leave Lightning unloaded."""
    code = """
import sys
from lightning_gen.__main__ import main
for argv in (["--help"], *([c, "--help"] for c in ("evaluate", "sample", "export", "compare", "sweep"))):
    try:
        main(argv)
    except SystemExit as e:
        assert e.code in (0, None), (argv, e.code)
print("LIGHTNING" if "lightning" in sys.modules else "LIGHT")
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("LIGHT")
    for command in ("fit", "evaluate", "sample", "export", "compare", "sweep", "--num_samples", "--ckpt", "--no_check"):
        assert command in out.stdout


def test_no_command_prints_usage_and_exits_2(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2 and "Tool commands" in capsys.readouterr().err


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


def test_evaluate_needs_exactly_one_source(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--metrics", "fid"])
    assert exc.value.code == 1
    assert capsys.readouterr().err.strip() == (
        "lightning-gen: error: Give exactly one of `--ckpt CKPT` (a checkpoint to sample) and `--images DIR` "
        "(`--fake DIR`: generated images)."
    )


def _fake_run(path: Path, class_path: str, elbo: list[float], lr: float) -> Path:
    path.mkdir(parents=True)
    rows = ["step,epoch,val/elbo,val/loss"] + [f"{i},0,{v},{-v}" for i, v in enumerate(elbo)]
    (path / "metrics.csv").write_text("\n".join(rows) + "\n")
    (path / "config.yaml").write_text(json.dumps({"model": {"class_path": class_path, "init_args": {"lr": lr}}}))
    return path


def test_compare_reads_the_monitor_from_the_contract_class(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """VAE's monitor is ``("val/elbo", "max")``: compare shows that metric, best = maximum."""
    a = _fake_run(tmp_path / "runs" / "vae" / "a", "lightning_gen.models.VAE", [-90.0, -70.0, -80.0], 1e-3)
    b = _fake_run(tmp_path / "runs" / "vae" / "b", "lightning_gen.models.VAE", [-95.0, -85.0], 1e-2)
    main(["compare", str(a), str(b), "--plot", ""])
    out = capsys.readouterr().out
    row_a = next(line for line in out.splitlines() if "vae/a" in line)
    assert "val/elbo best" in out and "val/loss" not in out
    assert "-70" in row_a and "-80" in row_a  # best (max) and final
    assert "0.001" in row_a  # the differing config key


def test_compare_of_an_unimportable_class_falls_back_to_val_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    a = _fake_run(tmp_path / "a" / "r1", "nowhere.Model", [1.0, 2.0], 1.0)
    main(["compare", str(a), "--plot", ""])
    out = capsys.readouterr().out
    assert "val/elbo best" in out and "val/loss best" in out


def _contract_checkpoint(path: Path, ema: bool) -> tuple[Path, dict[str, torch.Tensor]]:
    """A checkpoint as a contract family writes it: weights under ``net.`` and the export entry."""
    from lightning_gen.models.base import EXPORT_KEY, ExportSpec
    from lightning_gen.nets.dcgan import DCGANGenerator

    kwargs = {"image_shape": [1, 28, 28], "latent_dim": 8, "width": 8, "num_classes": None}
    torch.manual_seed(0)
    weights = DCGANGenerator(**kwargs).state_dict()
    state = {f"net.{k}": v for k, v in weights.items()}
    if ema:
        state |= {f"ema.module.{k}": v + 1 for k, v in weights.items() if v.is_floating_point()}
    spec = ExportSpec(
        builder="lightning_gen.nets.dcgan.DCGANGenerator",
        kwargs=kwargs,
        module="net",
        ema_module="ema.module" if ema else None,
    )
    torch.save({"state_dict": state, "global_step": 3, EXPORT_KEY: dataclasses.asdict(spec)}, path)
    return path, weights


def test_export_uses_the_contract_payload(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt, weights = _contract_checkpoint(tmp_path / "last.ckpt", ema=False)
    main(["export", "--ckpt", str(ckpt), "--no_ema"])
    assert capsys.readouterr().out.strip() == f"exported generator to {tmp_path / 'last.generator.pt'}"
    net = load_generator(tmp_path / "last.generator.pt")
    assert not net.training and all(torch.equal(net.state_dict()[k], v) for k, v in weights.items())
    with pytest.raises(SystemExit) as exc:  # no EMA in the checkpoint: one paragraph, no file
        main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "ema.pt")])
    assert exc.value.code == 1 and not (tmp_path / "ema.pt").exists()
    assert capsys.readouterr().err.strip() == (
        f"lightning-gen: error: {ckpt} has no EMA weights (trained with ema_decay: null). Fix: add `--no-ema`."
    )


def test_export_takes_the_ema_weights_by_default(tmp_path: Path) -> None:
    ckpt, weights = _contract_checkpoint(tmp_path / "last.ckpt", ema=True)
    main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "G.pt")])
    net = load_generator(tmp_path / "G.pt")
    name = next(k for k, v in weights.items() if v.is_floating_point())
    assert torch.equal(net.state_dict()[name], weights[name] + 1)


def test_export_of_a_family_without_export_entry_is_one_paragraph(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "vae.ckpt")
    with pytest.raises(SystemExit):
        main(["export", "--ckpt", str(tmp_path / "vae.ckpt"), "--out", str(tmp_path / "x.pt")])
    err = capsys.readouterr().err
    assert "has no 'lightning_gen_export' entry" in err and "Traceback" not in err and not (tmp_path / "x.pt").exists()


def test_atomic_write_keeps_the_old_file_on_error(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "f.json"
    with atomic_write(path, "w") as f:
        f.write("old")
    with pytest.raises(RuntimeError), atomic_write(path, "w") as f:
        f.write("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old" and os.listdir(path.parent) == ["f.json"]
    assert oct(path.stat().st_mode & 0o777) == "0o644"


@pytest.mark.parametrize(
    ("env", "rank"),
    [
        ({}, 0),
        ({"RANK": "3"}, 3),
        ({"LOCAL_RANK": "1"}, 1),
        ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, 1),
        ({"SLURM_PROCID": "2"}, 2),
    ],
)
def test_global_rank_from_the_launcher_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], rank: int) -> None:
    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert global_rank() == rank
    assert rank_and_world() == (0, 1)  # no process group: the collective view is a single process


def test_tokenizer_lookup_is_shared_by_sample_and_the_datamodule(tmp_path: Path) -> None:
    from datamodules.text.datamodule import load_tokenizer, tokenizer_in_checkpoint
    from datamodules.text.tokenizers import CharTokenizer
    from lightning_gen.commands.sample import tokenizer_for

    tokenizer = CharTokenizer.from_text("abc ROMEO:")
    checkpoint = {"state_dict": {}, "TextDataModule": {"tokenizer": tokenizer.to_dict()}}
    torch.save(checkpoint, tmp_path / "last.ckpt")
    for found in (
        tokenizer_in_checkpoint(checkpoint),
        load_tokenizer(tmp_path / "last.ckpt"),
        tokenizer_for(checkpoint, tmp_path / "last.ckpt"),
    ):
        assert found.encode("ROMEO:") == tokenizer.encode("ROMEO:")
    assert tokenizer_in_checkpoint({"state_dict": {}}) is None


def test_export_of_a_gan_checkpoint_from_before_the_contract(tmp_path: Path) -> None:
    """Old GAN checkpoints (``gan_generator_config``, no export entry) still export and sample."""
    from lightning_gen.nets.gan import build_generator

    config = {"architecture": "dcgan", "image_shape": [1, 28, 28], "latent_dim": 8, "width": 8, "num_classes": None}
    kwargs = {k: v for k, v in config.items() if k != "architecture"}
    torch.manual_seed(0)
    weights = build_generator("dcgan", **kwargs).state_dict()
    state = {f"generator_ema.module.{k}": v for k, v in weights.items()} | {
        f"generator.{k}": v for k, v in weights.items()
    }
    torch.save({"state_dict": state, "global_step": 7, "gan_generator_config": config}, tmp_path / "old.ckpt")
    main(["export", "--ckpt", str(tmp_path / "old.ckpt"), "--out", str(tmp_path / "G.pt")])
    generator = load_generator(tmp_path / "G.pt")
    assert generator.info["global_step"] == 7 and generator.info["ema"]
    images = generator.sample(3, generator=torch.Generator().manual_seed(0))
    assert images.shape == (3, 1, 28, 28) and 0.0 <= images.min() and images.max() <= 1.0
