"""End to end: ``lightning-gen fit`` a tiny GPT on a text file, then ``lightning-gen sample`` from its checkpoint."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from lightning_gen.__main__ import main
from tests.helpers.paths import EXPERIMENTS

TEXT = "ROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\n" * 80

pytestmark = pytest.mark.usefixtures("one_thread")


def test_fit_logs_text_metrics_and_sample_prints_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "corpus.txt").write_text(TEXT)
    small_eval = {
        "trainer": {
            "callbacks": [
                {
                    "class_path": "lightning_gen.callbacks.TextMetrics",
                    "init_args": {"num_prompts": 8, "prompt_tokens": 8, "reference_tokens": 12},
                }
            ]
        }
    }
    (tmp_path / "small_eval.yaml").write_text(yaml.safe_dump(small_eval))
    main(
        [
            "fit",
            "--config",
            str(EXPERIMENTS / "gpt_shakespeare_char.yaml"),
            "--config",
            str(tmp_path / "small_eval.yaml"),
            "--data.init_args.text_path",
            str(tmp_path / "corpus.txt"),
            "--data.init_args.block_size=16",
            "--model.init_args.block_size=16",
            "--model.init_args.n_layer=1",
            "--model.init_args.n_embd=32",
            "--model.init_args.n_head=2",
            "--model.init_args.warmup_steps=2",
            "--model.init_args.decay_steps=30",
            "--data.init_args.train_batches_per_epoch=15",
            "--data.init_args.val_batches=2",
            "--trainer.max_steps=30",
            "--trainer.log_every_n_steps=5",
            "--run.root",
            str(tmp_path / "runs"),
            "--run.id",
            "t1",
        ]
    )
    run = tmp_path / "runs" / "gpt_shakespeare_char" / "t1"
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    logged = {k for row in rows for k, v in row.items() if v}
    assert {
        "train/loss",
        "train/tokens_per_s",
        "val/loss",
        "val/ppl",
        "text/bleu",
        "text/rougeL",
        "text/self_bleu",
        "text/ppl",
    } <= logged
    val = [float(r["val/loss"]) for r in rows if r.get("val/loss")]
    assert len(val) == 2 and val[-1] < val[0] < 4.0  # two validations (every 15 steps); loss falls
    tables = sorted((run / "samples").glob("text_samples_step*.csv"))
    assert [t.name for t in tables] == ["text_samples_step0000015.csv", "text_samples_step0000030.csv"]
    with open(tables[-1]) as f:
        header, *table = list(csv.reader(f))
    assert header == ["prompt", "sample", "reference"] and len(table) == 8
    assert list((run / "wandb").glob("offline-run-*/files/media/table/text/samples_*.table.json"))

    capsys.readouterr()
    ckpt = run / "checkpoints" / "last.ckpt"
    main(["sample", "--ckpt", str(ckpt), "--prompt", "ROMEO:", "--max_new_tokens", "40", "--seed", "1"])
    first = capsys.readouterr().out
    assert first.startswith("ROMEO:") and len(first) >= 46
    main(["sample", "--ckpt", str(ckpt), "--prompt", "ROMEO:", "--max_new_tokens", "40", "--seed", "1"])
    assert capsys.readouterr().out == first  # deterministic for a seed

    with pytest.raises(SystemExit):
        main(["sample", "--ckpt", str(ckpt), "--prompt", "ZZZ"])  # characters outside the vocabulary
    assert "never saw" in capsys.readouterr().err
