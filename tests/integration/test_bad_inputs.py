"""Bad input gets one paragraph (exit 1, no traceback) and leaves every existing run's files as they were.

Each case runs ``lightning-gen`` with the arguments a user would type: in this process through
``lightning_gen.__main__.main`` (cheap: Lightning is imported once), and as a subprocess, as a
user runs it (about 10 s of start-up each: one case in the default suite, the rest ``slow``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lightning_gen.__main__ import main
from lightning_gen.runs.env import RUN_ID as RUN_ID_ENV
from tests.helpers.ops import cli_env, write_tiny_config
from tests.helpers.paths import EXPERIMENTS

TEXT = "ROMEO:\nBut, soft! what light through yonder window breaks?\n\n" * 40


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` by relative path: equal dicts mean nothing was added, changed or removed."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def existing_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runs root holding one finished tiny VAE run (``tiny/r1``, 8 steps, checkpoints every 2 steps)."""
    root = tmp_path_factory.mktemp("existing")
    config = write_tiny_config(root, epochs=1, wandb="disabled")
    argv, sys.argv = sys.argv, ["lightning-gen"]  # LightningCLI warns when pytest's own arguments are there too
    try:
        main(
            [
                "fit",
                "--config",
                str(config),
                "--run.root",
                str(root / "runs"),
                "--run.id",
                "r1",
                "--trainer.enable_progress_bar=false",
            ]
        )
    finally:
        sys.argv = argv
        os.environ.pop(RUN_ID_ENV, None)  # set for DDP children; must not leak into the other tests
    assert (root / "runs" / "tiny" / "r1" / "checkpoints" / "last.ckpt").is_file()
    return root / "runs"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Case:
    """A bad input: the arguments after ``lightning-gen``, extra environment, the paragraph expected."""

    args: list[str]
    message: str  # regex searched in stderr
    env: dict[str, str] = field(default_factory=dict)
    new_run_allowed: bool = False  # the input is found mid-fit: the new run's dir exists, the old one is untouched


def wandb_online_unreachable(folder: Path, runs: Path) -> Case:
    """Resume the existing run with W&B forced online, a key, and a server that refuses connections."""
    url = f"http://127.0.0.1:{closed_port()}"
    config = write_tiny_config(folder, epochs=2, wandb="online")
    return Case(
        ["fit", "--config", str(config), "--run.root", str(runs), "--run.id", "r1", "--ckpt_path", "last"],
        rf"W&B online \(--run.wandb=online\) cannot reach its server {re.escape(url)} \(Connection refused\)\. "
        r"Fix: train offline with `--run.wandb=offline`.*`--run.wandb=auto`.*WANDB_BASE_URL",
        env={"WANDB_API_KEY": "x" * 40, "WANDB_BASE_URL": url},
    )


def gpt_on_images(folder: Path, runs: Path) -> Case:
    return Case(
        [
            "fit",
            "--config",
            str(EXPERIMENTS / "gpt_shakespeare_char.yaml"),
            "--config",
            str(EXPERIMENTS / "debug.yaml"),
            "--data=datamodules.SyntheticImageDataModule",
            "--run.root",
            str(runs),
        ],
        r"The model lightning_gen.models.GPT trains on token ids \(it needs the datamodule's `vocab_size`\), but "
        r"datamodules.SyntheticImageDataModule yields images .* Fix: give GPT a datamodule of token ids, e.g. "
        r"`--data=datamodules.text.TextDataModule`",
    )


def vae_on_text(folder: Path, runs: Path) -> Case:
    (folder / "corpus.txt").write_text(TEXT)
    return Case(
        [
            "fit",
            "--config",
            str(write_tiny_config(folder)),
            "--data=datamodules.text.TextDataModule",
            f"--data.init_args.text_path={folder / 'corpus.txt'}",
            "--run.root",
            str(runs),
        ],
        r"The model lightning_gen.models.VAE trains on images \(it needs the datamodule's `image_shape`\), but "
        r"datamodules.text.TextDataModule yields token ids .* Fix: give VAE a datamodule of images",
    )


def nul_text(folder: Path, runs: Path) -> Case:
    (folder / "zeros.txt").write_bytes(b"\0" * 5000)
    return Case(
        [
            "fit",
            "--config",
            str(EXPERIMENTS / "gpt_shakespeare_char.yaml"),
            "--config",
            str(EXPERIMENTS / "debug.yaml"),
            f"--data.init_args.text_path={folder / 'zeros.txt'}",
            "--run.root",
            str(runs),
        ],
        r"zeros.txt does not look like text: 5,000 of its 5,000 characters are control characters \('\\x00' x5,000\).*Fix:",
    )


def truncated_checkpoint_to_sample(folder: Path, runs: Path) -> Case:
    """A copy of the run's checkpoints with ``last.ckpt`` cut in half (the run itself is not touched)."""
    copy = folder / "copied" / "checkpoints"
    shutil.copytree(runs / "tiny" / "r1" / "checkpoints", copy)
    data = (copy / "last.ckpt").read_bytes()
    (copy / "last.ckpt").write_bytes(data[: len(data) // 2])
    return Case(
        ["sample", "--ckpt", str(copy / "last.ckpt"), "--max_new_tokens", "5"],
        r"Checkpoint \S+last.ckpt is truncated or corrupt and cannot be loaded \(.*\)\. Nothing was written\. "
        r"Pass another checkpoint of that run to --ckpt \(epoch=0-step=\d+.ckpt",
    )


def truncated_checkpoint_to_export(folder: Path, runs: Path) -> Case:
    case = truncated_checkpoint_to_sample(folder, runs)
    case.args = ["export", "--ckpt", case.args[2], "--out", str(folder / "G.pt")]
    return case


def corrupt_image_mid_fit(folder: Path, runs: Path) -> Case:
    """An image folder where one of 40 files is garbage; 2 DataLoader workers decode it."""
    images = folder / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(images / f"{i:02d}.png")
    (images / "17.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 256, 300, dtype=np.uint8)))
    return Case(
        [
            "fit",
            "--config",
            str(write_tiny_config(folder)),
            "--data=datamodules.ImageFolderDataModule",
            f"--data.init_args.root={images}",
            "--data.init_args.image_size=16",
            "--data.init_args.channels=1",
            "--data.init_args.batch_size=8",
            "--data.init_args.num_workers=2",
            "--data.init_args.val_fraction=0.1",
            "--run.root",
            str(runs),
            "--run.wandb=disabled",
        ],
        rf"^lightning-gen: error: Image {re.escape(str(images / '17.png'))} cannot be decoded \(UnidentifiedImageError: .*\)\. "
        r"Fix: re-encode that file .* `python -m datamodules.check_images \S+images` lists every unreadable image under a folder\.$",
        new_run_allowed=True,
    )


def model_constructor_error(folder: Path, runs: Path) -> Case:
    """A model's own ConfigError, which jsonargparse wraps in a ValueError listing the Union members it tried."""
    return Case(
        ["fit", "--config", str(write_tiny_config(folder)), "--model.init_args.iw_samples=0", "--run.root", str(runs)],
        r"^lightning-gen: error: `beta` and `kl_warmup_steps` must be >= 0, `iw_samples` and `latent_dim` >= 1\.$",
    )


CASES: dict[str, Callable[[Path, Path], Case]] = {
    "model_constructor_error": model_constructor_error,
    "wandb_online_unreachable": wandb_online_unreachable,
    "gpt_on_images": gpt_on_images,
    "vae_on_text": vae_on_text,
    "nul_text": nul_text,
    "truncated_checkpoint_to_sample": truncated_checkpoint_to_sample,
    "truncated_checkpoint_to_export": truncated_checkpoint_to_export,
    "corrupt_image_mid_fit": corrupt_image_mid_fit,
}


def check_outcome(
    case: Case, code: int, stderr: str, runs: Path, before: dict[str, str], runs_before: set[str]
) -> None:
    assert code == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    paragraph = [line for line in stderr.splitlines() if line.startswith("lightning-gen: error:")]
    assert len(paragraph) == 1, stderr[-3000:]
    assert re.search(case.message, paragraph[0]), paragraph[0]
    assert file_hashes(runs / "tiny" / "r1") == before
    if not case.new_run_allowed:
        assert {str(p.relative_to(runs)) for p in runs.rglob("*")} == runs_before


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_in_process(
    name: str,
    existing_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    one_thread,
) -> None:
    case = CASES[name](tmp_path, existing_run)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "argv", ["lightning-gen"])
    before, runs_before = (
        file_hashes(existing_run / "tiny" / "r1"),
        {str(p.relative_to(existing_run)) for p in existing_run.rglob("*")},
    )
    start = time.monotonic()
    with pytest.raises(SystemExit) as exit_:
        main(case.args)
    elapsed = time.monotonic() - start
    check_outcome(case, exit_.value.code, capsys.readouterr().err, existing_run, before, runs_before)
    if name == "wandb_online_unreachable":
        assert elapsed < 30  # W&B itself failed after ~47 s; the probe itself is milliseconds (see test_wandb_mode)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=() if n == "corrupt_image_mid_fit" else pytest.mark.slow) for n in CASES]
)
def test_bad_input_from_the_command_line(name: str, existing_run: Path, tmp_path: Path) -> None:
    case = CASES[name](tmp_path, existing_run)
    before, runs_before = (
        file_hashes(existing_run / "tiny" / "r1"),
        {str(p.relative_to(existing_run)) for p in existing_run.rglob("*")},
    )
    proc = subprocess.run(
        [sys.executable, "-m", "lightning_gen", *case.args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**cli_env(), **case.env, "OMP_NUM_THREADS": "1"},
    )
    check_outcome(case, proc.returncode, proc.stderr, existing_run, before, runs_before)
