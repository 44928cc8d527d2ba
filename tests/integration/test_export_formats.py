"""``lightning-gen export --format diffusers|transformers|safetensors`` through the CLI (in this process).

The default suite uses checkpoints laid out as the families write them (tests/unit/exporters); the
slow tests export checkpoints that ``lightning-gen fit`` wrote, and compare once more.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from lightning_gen.__main__ import main
from tests.helpers.cli import run_main
from tests.helpers.exports import TEXT, diffusion_checkpoint, text_checkpoint
from tests.helpers.paths import EXPERIMENTS

pytestmark = pytest.mark.usefixtures("one_thread")


def test_cli_exports_a_ddpm_pipeline_and_refuses_other_pairs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from diffusers import DDPMPipeline

    ckpt, net = diffusion_checkpoint(tmp_path / "last.ckpt", sampler="ddim", steps=6)
    main(["export", "--ckpt", str(ckpt), "--format", "diffusers"])  # --out defaults to <ckpt>.diffusers
    out = tmp_path / "last.diffusers"
    assert capsys.readouterr().out.strip() == (
        f"exported the diffusion EMA weights to {out} (DDPMPipeline.from_pretrained reads it; sample with "
        "num_inference_steps=6 as this model does)"
    )
    pipe = DDPMPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(2, generator=torch.Generator().manual_seed(0), num_inference_steps=6, output_type="pt").images
    assert (theirs - net.sample(2, generator=torch.Generator().manual_seed(0))).abs().max().item() <= 1e-5
    capsys.readouterr()  # diffusers' own loading notes

    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt", str(ckpt), "--format", "transformers", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 1 and "Traceback" not in err and "\n" not in err
    assert err == (
        f"lightning-gen: error: {ckpt} holds a diffusion model, which does not export as `--format transformers` "
        "(transformers' GPT2LMHeadModel holds a GPT-2 style transformer only). Its formats: `--format torch`, "
        "`--format safetensors`, `--format diffusers`. Nothing was written."
    )
    with pytest.raises(SystemExit):  # an existing export is not replaced without --force
        main(["export", "--ckpt", str(ckpt), "--format", "safetensors", "--out", str(out)])
    assert "already exists" in capsys.readouterr().err and (out / "model_index.json").is_file()


def test_cli_exports_a_gpt_for_transformers_and_refuses_the_torch_format(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    transformers = pytest.importorskip("transformers")
    from datamodules.text.tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer.train(TEXT, 300)
    ckpt, model = text_checkpoint(tmp_path / "last.ckpt", bpe)
    with pytest.raises(SystemExit) as exit_info:  # --format torch (the default) rebuilds image generators only
        main(["export", "--ckpt", str(ckpt), "--no-ema"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 1 and "\n" not in err and "Traceback" not in err
    assert err.endswith("Its formats: `--format safetensors`, `--format transformers`. Nothing was written.")
    assert not (tmp_path / "last.generator.pt").exists()

    main(["export", "--ckpt", str(ckpt), "--no-ema", "--format", "transformers", "--out", str(tmp_path / "gpt2")])
    assert "transformers.GPT2LMHeadModel.from_pretrained reads it" in capsys.readouterr().out
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "gpt2").eval()
    idx = torch.tensor([bpe.encode(TEXT)[:32]])
    with torch.no_grad():
        assert (hf(idx).logits - model(idx)).abs().max().item() <= 1e-4


# --- checkpoints written by `lightning-gen fit` ----------------------------------------------------------
@pytest.mark.slow
def test_fitted_gpt_exports_to_transformers_with_equal_logits_and_greedy_tokens(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from lightning_gen.models.gpt import GPT

    (tmp_path / "corpus.txt").write_text(TEXT * 5)
    (tmp_path / "small.yaml").write_text(yaml.safe_dump({"trainer": {"callbacks": []}}))
    proc = run_main(
        ["fit", "--config", str(EXPERIMENTS / "gpt_shakespeare_bpe.yaml"), "--config", str(tmp_path / "small.yaml"),
         "--data.init_args.text_path", str(tmp_path / "corpus.txt"), "--data.init_args.bpe_encoding=null",
         "--data.init_args.bpe_vocab_size=300", "--data.init_args.block_size=16", "--model.init_args.block_size=16",
         "--model.init_args.n_layer=1", "--model.init_args.n_embd=32", "--model.init_args.n_head=2",
         "--model.init_args.warmup_steps=2", "--model.init_args.decay_steps=10", "--model.init_args.ema_decay=0.9",
         "--data.init_args.train_batches_per_epoch=10", "--data.init_args.val_batches=1", "--trainer.max_steps=10",
         "--run.wandb=disabled", "--run.root", str(tmp_path / "runs"), "--run.id", "t"],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = tmp_path / "runs" / "gpt_shakespeare_bpe" / "t" / "checkpoints" / "last.ckpt"
    proc = run_main(
        ["export", "--ckpt", str(ckpt), "--format", "transformers", "--out", str(tmp_path / "gpt2")], tmp_path
    )
    assert proc.returncode == 0 and "byte-level BPE" in proc.stdout, proc.stderr[-3000:]
    model = GPT.load_from_checkpoint(ckpt, map_location="cpu").eval()
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "gpt2").eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "gpt2")
    idx = torch.tensor([tokenizer.encode("ROMEO:\nBut, soft! what light")[:8]])  # + 8 new tokens = block_size
    with torch.no_grad():
        assert (hf(idx).logits - model.sampling_module()(idx)).abs().max().item() <= 1e-4
    theirs = hf.generate(idx, max_new_tokens=8, do_sample=False)
    assert torch.equal(theirs, model.generate(idx, max_new_tokens=8, temperature=0.0))  # EMA weights, as exported
    assert json.loads((tmp_path / "gpt2" / "lightning_gen_export.json").read_text())["global_step"] == 10


@pytest.mark.slow
def test_fitted_ddpm_exports_to_a_pipeline_with_equal_samples(tmp_path: Path) -> None:
    from diffusers import DDPMPipeline

    from lightning_gen.models.diffusion import Diffusion

    proc = run_main(
        ["fit", "--config", str(EXPERIMENTS / "ddpm_mnist.yaml"), "--config", str(EXPERIMENTS / "debug.yaml"),
         "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1", "--model.init_args.sampling.steps=3",
         "--run.wandb=disabled", "--run.id=t"],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = tmp_path / "runs" / "debug" / "ddpm_mnist" / "t" / "checkpoints" / "last.ckpt"
    proc = run_main(["export", "--ckpt", str(ckpt), "--format", "diffusers", "--out", str(tmp_path / "pipe")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pipe = DDPMPipeline.from_pretrained(tmp_path / "pipe")
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(2, generator=torch.Generator().manual_seed(0), num_inference_steps=3, output_type="pt").images
    ours = Diffusion.load_from_checkpoint(ckpt, map_location="cpu").sample(
        2, generator=torch.Generator().manual_seed(0)
    )
    assert (theirs - ours).abs().max().item() <= 1e-5
