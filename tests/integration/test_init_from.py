"""``init_from``: a new run from another run's weights only (pre-train, then fine-tune), any family.

A tiny GPT pre-trains for a few steps on two Shakespeare plays; the tests fine-tune it on a third
(with its tokenizer), check what is and is not carried over, and check every refusal.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from datamodules.text import TextDataModule
from gen_common.errors import ConfigError
from lightning_gen.__main__ import main
from lightning_gen.cli.trainer import build_cli
from lightning_gen.metrics.inception import file_sha256
from tests.helpers.cli import run_main

pytestmark = pytest.mark.usefixtures("one_thread")

SOURCE_PLAYS = ["the-comedy-of-errors", "the-tempest"]  # neither has 'X', which macbeth has

TINY_GPT = {
    "model": {
        "class_path": "lightning_gen.models.GPT",
        "init_args": {
            "block_size": 16,
            "n_layer": 1,
            "n_head": 2,
            "n_embd": 16,
            "warmup_steps": 1,
            "min_lr": 1.0e-4,
            "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1.0e-3}},
        },
    },
    "data": {
        "class_path": "datamodules.text.TextDataModule",
        "init_args": {
            "plays": SOURCE_PLAYS,
            "block_size": 16,
            "batch_size": 4,
            "train_batches_per_epoch": 3,
            "val_batches": 2,
        },
    },
    "trainer": {
        "max_steps": 6,
        "max_epochs": -1,
        "log_every_n_steps": 1,
        "num_sanity_val_steps": 0,
        "accelerator": "cpu",
        "devices": 1,
        "enable_model_summary": False,
        "enable_progress_bar": False,
    },
    "run": {"wandb": "disabled", "progress": "none"},
}

RUN_ENV = ("LIGHTNING_GEN_RUN_ID", "LIGHTNING_GEN_EVAL_DIR")  # set by an in-process run for its DDP children


def _main(args: list[str]) -> None:
    """``lightning-gen ARGS`` in this process, leaving no run id behind for the next command."""
    try:
        main(args)
    finally:
        for key in RUN_ENV:
            os.environ.pop(key, None)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(tiny GPT config, ``last.ckpt`` of 6 pre-training steps on two plays)."""
    folder = tmp_path_factory.mktemp("source")
    config = folder / "tiny_gpt.yaml"
    config.write_text(yaml.safe_dump(TINY_GPT))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    _main(["fit", "--config", str(config), "--run.root", str(folder / "runs"), "--run.id", "src"])
    torch.set_num_threads(threads)
    ckpt = folder / "runs" / "tiny_gpt" / "src" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=False)["global_step"] == 6
    yield config, ckpt


def _fine_tune_args(config: Path, ckpt: Path, root: Path, *extra: str) -> list[str]:
    return [
        "--config",
        str(config),
        "--data.init_args.plays=[the-tempest]",
        "--init_from",
        str(ckpt),
        "--run.root",
        str(root),
        "--run.name",
        "ft",
        *extra,
    ]


def test_loaded_weights_equal_the_source(source: tuple[Path, Path], tmp_path: Path) -> None:
    config, ckpt = source
    saved = torch.load(ckpt, weights_only=False)["state_dict"]
    cli = build_cli(_fine_tune_args(config, ckpt, tmp_path / "runs"), run=False)
    loaded = cli.model.state_dict()
    assert loaded.keys() == saved.keys() and all(torch.equal(loaded[k], saved[k]) for k in saved)
    fresh = build_cli(["--config", str(config), "--run.root", str(tmp_path / "runs")], run=False).model.state_dict()
    assert not torch.equal(fresh["net.wte.weight"], saved["net.wte.weight"])  # so the equality above is the copy
    assert cli.datamodule.tokenizer.to_dict() == TextDataModule(plays=SOURCE_PLAYS).tokenizer.to_dict()


def test_fine_tune_is_a_new_run_from_step_0(source: tuple[Path, Path], tmp_path: Path) -> None:
    """Only weights travel: new run id and dir, global step and AdamW state from 0, the source recorded."""
    config, ckpt = source
    _main(["fit", *_fine_tune_args(config, ckpt, tmp_path / "runs", "--trainer.max_steps=2")])
    (run_dir,) = (tmp_path / "runs" / "ft").iterdir()
    assert run_dir.name != "src"
    tuned = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert tuned["global_step"] == 2  # not 6 + 2
    assert {int(s["step"]) for s in tuned["optimizer_states"][0]["state"].values()} == {2}  # a fresh AdamW
    assert tuned["lightning_gen"]["run_id"] == run_dir.name
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["init_from"] == str(ckpt.resolve()) and saved["init_from_sha256"] == file_sha256(ckpt)
    assert saved["data"]["init_args"]["tokenizer_path"] == str(ckpt.resolve())  # the pre-trained vocabulary
    assert saved["run"]["id"] == run_dir.name
    metrics = (run_dir / "metrics.csv").read_text().splitlines()
    assert metrics[1].split(",")[:2] == ["0", "0"]  # epoch 0, step 0


def test_resume_wins_over_init_from_with_ckpt_path_last(
    source: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A requeued job passes both: the first start initialises, the restart resumes its own run."""
    config, ckpt = source
    args = _fine_tune_args(config, ckpt, tmp_path / "runs", "--ckpt_path", "last", "--run.id", "job")
    _main(["fit", *args, "--trainer.max_steps=1"])
    _main(["fit", *args, "--trainer.max_steps=2"])
    out = capsys.readouterr().out
    assert "optimizer, step and run id start fresh." in out  # the first start
    assert "`--init_from` only starts new runs, so it is not loaded" in out  # the restart
    assert (
        torch.load(tmp_path / "runs" / "ft" / "job" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
        == 2
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--ckpt_path", "{ckpt}"],
            "`--ckpt_path` resumes that run (its weights, optimizer, step and run id), `--init_from` starts a new run",
        ),
        (["--init_from_sha256", "0" * 64], "the file changed since this config was written"),
        (["--init_from", "{missing}"], "is not a file: pass a checkpoint of the source run"),
    ],
    ids=["with_ckpt_path", "sha256_changed", "missing_file"],
)
def test_refusals_are_one_paragraph_and_write_nothing(
    source: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    config, ckpt = source
    extra = [e.format(ckpt=ckpt, missing=tmp_path / "nope.ckpt") for e in extra]
    with pytest.raises(SystemExit) as exit_info:
        _main(["fit", *_fine_tune_args(config, ckpt, tmp_path / "runs"), *extra])
    (paragraph,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lightning-gen: error:")]
    assert exit_info.value.code == 1 and message in paragraph and "Nothing was written" in paragraph
    assert not (tmp_path / "runs").exists()


def test_shape_mismatch_through_the_cli(source: tuple[Path, Path], tmp_path: Path) -> None:
    config, ckpt = source
    result = run_main(
        ["fit", *_fine_tune_args(config, ckpt, tmp_path / "runs", "--model.init_args.n_embd=32")], cwd=tmp_path
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (paragraph,) = [line for line in result.stderr.splitlines() if line.startswith("lightning-gen: error:")]
    assert "does not fit the model this config builds (10 tensor(s) differ:" in paragraph
    assert "`net.wte.weight` is (64, 16) in the checkpoint but (64, 32) in this model" in paragraph
    assert "; and 5 more)" in paragraph and "its tokenizer (`data.init_args.tokenizer_path`)" in paragraph
    assert not (tmp_path / "runs").exists()


def test_fixed_tokenizer_names_characters_it_lacks(source: tuple[Path, Path]) -> None:
    _, ckpt = source
    data = TextDataModule(plays=["macbeth"], tokenizer_path=str(ckpt))
    with pytest.raises(
        ConfigError,
        match=r"1 character\(s\) that the character tokenizer .* \(64 symbols\) never saw: 'X' \(34 times\)",
    ):
        data.tokenizer  # noqa: B018
