"""Unsupported family/format pairs and folder outputs: one paragraph each, and nothing written or deleted."""

from __future__ import annotations

from pathlib import Path

import pytest

from gen_common.errors import LightningGenError
from lightning_gen.exporters import export_folder
from lightning_gen.exporters.source import MARKER
from tests.helpers.exports import TEXT, diffusion_checkpoint, text_checkpoint


@pytest.fixture
def gpt_ckpt(tmp_path: Path) -> Path:
    from datamodules.text.tokenizers import CharTokenizer

    return text_checkpoint(tmp_path / "gpt.ckpt", CharTokenizer.from_text(TEXT))[0]


def test_a_format_the_family_lacks_is_one_paragraph_naming_its_formats(tmp_path: Path, gpt_ckpt: Path) -> None:
    with pytest.raises(LightningGenError) as err:
        export_folder(gpt_ckpt, tmp_path / "out", "diffusers", use_ema=False)
    assert str(err.value) == (
        f"{gpt_ckpt} holds a GPT (architecture gpt), which does not export as `--format diffusers` (diffusers "
        "pipelines hold diffusion models only). Its formats: `--format safetensors`, `--format transformers`. "
        "Nothing was written."
    )
    ddpm, _ = diffusion_checkpoint(tmp_path / "ddpm.ckpt")
    with pytest.raises(LightningGenError, match=r"Its formats: `--format torch`, `--format safetensors`, `--format "
                       r"diffusers`\. Nothing was written\.$"):  # fmt: skip
        export_folder(ddpm, tmp_path / "out", "transformers")
    assert not (tmp_path / "out").exists() and "\n" not in str(err.value)


def test_folder_outputs_are_replaced_only_when_forced_and_only_if_an_export(tmp_path: Path) -> None:
    ddpm, _ = diffusion_checkpoint(tmp_path / "ddpm.ckpt")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for force in (False, True):  # a folder of other things: never replaced, even with --force
        with pytest.raises(LightningGenError, match="Nothing was written"):
            export_folder(ddpm, mine, "safetensors", force=force)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(LightningGenError, match="is a file; this format writes a folder"):
        export_folder(ddpm, tmp_path / "file", "diffusers")

    export_folder(ddpm, tmp_path / "out", "safetensors")
    with pytest.raises(LightningGenError, match="already exists.*add `--force`"):
        export_folder(ddpm, tmp_path / "out", "diffusers")
    export_folder(ddpm, tmp_path / "out", "diffusers", force=True)  # an earlier export: replaced whole
    assert (tmp_path / "out" / "model_index.json").is_file() and not (tmp_path / "out" / "model.safetensors").exists()
    assert (tmp_path / "out" / MARKER).is_file() and not list(tmp_path.glob(".tmp-*"))
