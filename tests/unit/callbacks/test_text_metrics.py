"""Text evaluation: BLEU/ROUGE-L/self-BLEU equal the reference packages; perplexities are exp(mean loss)."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import sacrebleu
import torch
import torch.nn.functional as F
from rouge_score import rouge_scorer

from datamodules.text import TextDataModule
from lightning_gen.callbacks.text_metrics import TextMetrics, corpus_bleu, rouge_l, self_bleu
from lightning_gen.models.gpt import GPT

SAMPLES = [
    "the cat sat on the mat, quite still.",
    "O Romeo, Romeo! wherefore art thou Romeo?",
    "what light through yonder window breaks",
    "to be or not to be that is the question",
]

REFERENCES = [
    "the cat is on the mat",
    "O Romeo, Romeo! wherefore art thou Romeo? Deny thy father",
    "but soft what light through yonder window breaks",
    "to be, or not to be: that is the question",
]

TEXT = "ROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\n" * 60

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bleu_equals_sacrebleu() -> None:
    # every n-gram order has matches here, so sacrebleu's default smoothing plays no part
    assert corpus_bleu(SAMPLES, REFERENCES) == pytest.approx(
        sacrebleu.corpus_bleu(SAMPLES, [REFERENCES]).score, abs=1e-4
    )
    assert corpus_bleu(SAMPLES, REFERENCES) > 10
    # unsmoothed corpus BLEU, as sacrebleu with smooth_method="none" (0 when no 4-gram matches at all)
    samples, refs = SAMPLES[:1] + ["thou art"], REFERENCES[:1] + ["art thou"]
    assert corpus_bleu(samples, refs) == pytest.approx(
        sacrebleu.corpus_bleu(samples, [refs], smooth_method="none").score, abs=1e-4
    )
    # exp smoothing (the callback's default) is sacrebleu's default
    for hyps, ref in (
        (samples, refs),
        (SAMPLES, REFERENCES),
        (["thou art a villain and a knave", "good my lord"], ["art thou a knave or a villain", "my good lord"]),
    ):
        expected = sacrebleu.corpus_bleu(hyps, [ref]).score
        assert corpus_bleu(hyps, ref, smoothing="exp") == pytest.approx(expected, abs=1e-4) and expected > 0


def test_self_bleu_equals_sacrebleu_with_the_other_samples_as_references() -> None:
    streams = [[SAMPLES[j] for j in range(len(SAMPLES)) if j != i] for i in range(len(SAMPLES))]
    expected = sacrebleu.corpus_bleu(SAMPLES, [list(s) for s in zip(*streams)], smooth_method="none").score
    assert self_bleu(SAMPLES) == pytest.approx(expected, abs=1e-4)
    smoothed = sacrebleu.corpus_bleu(SAMPLES, [list(s) for s in zip(*streams)]).score
    assert self_bleu(SAMPLES, smoothing="exp") == pytest.approx(smoothed, abs=1e-4) and smoothed > expected
    assert self_bleu(["same words here again"] * 3) == pytest.approx(100.0)
    near = ["the cat sat on the mat today", "the cat sat on the mat again", "a cat sat on a mat today"]
    streams = [[near[j] for j in range(3) if j != i] for i in range(3)]
    assert self_bleu(near) == pytest.approx(
        sacrebleu.corpus_bleu(near, [list(s) for s in zip(*streams)]).score, abs=1e-4
    )


def test_rouge_l_equals_rouge_score() -> None:
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    expected = sum(scorer.score(r, s)["rougeL"].fmeasure for s, r in zip(SAMPLES, REFERENCES)) / len(SAMPLES)
    assert rouge_l(SAMPLES, REFERENCES) == pytest.approx(expected, abs=1e-6)


def tiny_setup(tmp_path: Path) -> tuple[GPT, TextDataModule]:
    path = tmp_path / "text.txt"
    path.write_text(TEXT)
    dm = TextDataModule(
        text_path=str(path), cache_dir=str(tmp_path / "cache"), block_size=16, batch_size=4, val_batches=3
    )
    dm.prepare_data()
    dm.setup("fit")
    torch.manual_seed(0)
    model = GPT(vocab_size=dm.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)
    return model, dm


def test_callback_is_deterministic_and_its_perplexity_is_exp_mean_reference_loss(tmp_path: Path) -> None:
    model, dm = tiny_setup(tmp_path)
    callback = TextMetrics(num_prompts=4, prompt_tokens=12, reference_tokens=10, seed=3)
    metrics, rows = callback.evaluate(model, dm.val_tokens, dm.tokenizer)
    again, rows_again = callback.evaluate(model, dm.val_tokens, dm.tokenizer)
    assert metrics == again and rows == rows_again
    assert set(metrics) == {"text/bleu", "text/rougeL", "text/self_bleu", "text/ppl"}
    prompts, refs = callback.prompts_and_references(dm.val_tokens)
    assert [r[0] for r in rows] == [dm.tokenizer.decode(p.tolist()) for p in prompts]
    assert [r[2] for r in rows] == [dm.tokenizer.decode(r.tolist()) for r in refs]
    assert all(len(r[1]) == 10 for r in rows)  # char tokenizer: continuations as long as the references
    # perplexity of the references given the prompts, by hand (context cropped to block_size 16)
    full = torch.cat([prompts, refs], dim=1)
    logits = model(full[:, :-1][:, -16:])[:, -10:]
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), full[:, -10:].reshape(-1))
    assert metrics["text/ppl"] == pytest.approx(math.exp(loss.item()), rel=1e-4)
    assert metrics["text/bleu"] == pytest.approx(
        corpus_bleu([r[1] for r in rows], [r[2] for r in rows], smoothing="exp")
    )


def test_val_ppl_is_exp_of_mean_val_loss(tmp_path: Path) -> None:
    model, dm = tiny_setup(tmp_path)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    logged = trainer.validate(model, datamodule=dm, verbose=False)[0]
    with torch.no_grad():
        losses = [model.loss(x, y).item() for x, y in dm.val_dataloader()]
    mean = sum(losses) / len(losses)  # equal-sized batches: the token-weighted mean is the plain mean
    assert logged["val/loss"] == pytest.approx(mean, rel=1e-5)
    assert logged["val/ppl"] == pytest.approx(math.exp(mean), rel=1e-5)


def test_every_n_steps_logs_during_training(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import CSVLogger

    model, dm = tiny_setup(tmp_path)
    model.hparams.decay_steps = model.decay_steps = 4
    model.warmup_steps = 1
    callback = TextMetrics(every_n_epochs=None, every_n_steps=2, num_prompts=3, prompt_tokens=8, reference_tokens=8)
    trainer = L.Trainer(
        max_steps=4,
        limit_val_batches=0,
        logger=CSVLogger(tmp_path, name="", version=""),
        log_every_n_steps=1,
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    assert set(callback.last_metrics) == {"text/bleu", "text/rougeL", "text/self_bleu", "text/ppl"}
    tables = sorted(p.name for p in (tmp_path / "samples").glob("text_samples_step*.csv"))
    assert tables == ["text_samples_step0000002.csv", "text_samples_step0000004.csv"]


def test_eval_mode_is_restored_when_sampling_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error inside the callback's generate leaves every submodule in the mode it had."""
    model, dm = tiny_setup(tmp_path)
    model.train()
    model.net.drop.eval()  # a submodule deliberately in eval mode stays so
    seen = []

    def fail(*args, **kwargs):
        seen.append(model.training)
        raise RuntimeError("boom")

    monkeypatch.setattr(model, "generate", fail)
    with pytest.raises(RuntimeError, match="boom"):
        TextMetrics(num_prompts=3, prompt_tokens=8, reference_tokens=8).evaluate(model, dm.val_tokens, dm.tokenizer)
    assert seen == [False]  # sampled in eval mode
    assert model.training and model.net.training and not model.net.drop.training
