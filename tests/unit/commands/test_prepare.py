"""``lightning-gen prepare``: the source from ``--config``'s data section or ``--data``, N workers and a progress bar;
an output already in use, a dynamic binarization or a datamodule of neither kind is one paragraph that changes nothing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from datamodules.streaming.manifest import MANIFEST_NAME
from tests.helpers.cli import run_main
from tests.helpers.paths import REPO_ROOT
from tests.helpers.shards import write_id_images

EXPERIMENT = """\
model: {{class_path: lightning_gen.models.VAE, init_args: {{latent_dim: 4}}}}
data:
  class_path: datamodules.ImageFolderDataModule
  init_args: {{root: {root}, image_size: 8, channels: 1, val_fraction: 0.25}}
trainer: {{max_steps: 3, callbacks: [{{class_path: lightning.pytorch.callbacks.TQDMProgressBar}}]}}
run: {{root: runs}}
"""


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_id_images(tmp_path_factory.mktemp("prepare") / "images", 24, classes=2)


def _snapshot(folder: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_prepare_from_an_experiment_data_section_with_an_override_and_a_progress_bar(
    images: Path, tmp_path: Path
) -> None:
    (tmp_path / "exp.yaml").write_text(EXPERIMENT.format(root=images))
    args = ["prepare", "--config", "exp.yaml", "--data.init_args.val_fraction=0.5", "--out", "shards"]
    proc = run_main([*args, "--workers", "2", "--chunk_mb", "0.001", "--progress", "on"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"writing images .* 24/24", proc.stderr)  # the bar's last state: every image written
    assert re.fullmatch(
        r"lightning-gen prepare: wrote images shards of imagefolder-images-classes2-1x8-val0\.5-seed0 to shards "
        r"\(images: train 12, val 12\)\. Train from them with `--data=datamodules\.streaming\.ShardImageDataModule "
        r"--data\.init_args\.root=shards` \(docs/data\.md\)\.\n",
        proc.stdout,
    )
    manifest = json.loads((tmp_path / "shards" / MANIFEST_NAME).read_text())
    assert (
        manifest["complete"] and manifest["num_classes"] == 2 and manifest["source"]["init_args"]["val_fraction"] == 0.5
    )
    assert len(list((tmp_path / "shards" / "train").glob("chunk-1-*.bin"))) > 0  # the second worker wrote chunks


@pytest.mark.parametrize("state", ["complete", "half-written", "foreign"])
def test_an_output_in_use_is_refused_and_left_as_it_was(images: Path, tmp_path: Path, state: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    expected = {
        "complete": r"already holds a complete shard set of 'x'\. Fix: use it as it is, or choose another `--out`",
        "half-written": r"already holds a half-written shard set .* Fix: delete it and run `lightning-gen prepare` again",
        "foreign": r"already holds 1 file\(s\) that are not a lightning_gen shard set\. Fix: choose another `--out`",
    }[state]
    name, body = ("notes.txt", "mine") if state == "foreign" else (MANIFEST_NAME, "")
    if state != "foreign":
        body = json.dumps({"complete": state == "complete", "dataset_id": "x"})
    (out / name).write_text(body)
    before = _snapshot(tmp_path)
    args = ["prepare", "--data=datamodules.ImageFolderDataModule", f"--data.root={images}", "--out", str(out)]
    proc = run_main(args, tmp_path)
    assert proc.returncode == 1 and re.search(
        rf"^lightning-gen: error: `--out` {out} {expected}.*Nothing was changed\.$", proc.stderr
    )
    assert _snapshot(tmp_path) == before


def test_sources_that_cannot_be_shards_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    proc = run_main(
        ["prepare", "--data=datamodules.MNISTDataModule", "--data.binarize=dynamic", "--out", "o"], tmp_path
    )
    assert proc.returncode == 1 and "Shards store fixed pixels, but `data.init_args.binarize: dynamic`" in proc.stderr
    boring = "lightning.pytorch.demos.boring_classes.BoringDataModule"
    proc = run_main(["prepare", f"--data={boring}", "--out", "o"], tmp_path)
    assert proc.returncode == 1 and f"{boring} is neither an image datamodule" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_help_lists_the_options_without_importing_lightning() -> None:
    code = "import sys; from lightning_gen.__main__ import main; main(['prepare', '--help']); print('lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("False")
    for flag in ("--out", "--workers", "--chunk_mb", "--endpoint_url", "--config", "--data", "--progress"):
        assert flag in out.stdout
