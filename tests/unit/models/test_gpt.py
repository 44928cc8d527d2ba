"""The language-model LightningModule (GPT or LSTM net): generation, the optimisation recipe, EMA, clipping under bf16."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from gen_common.errors import ConfigError
from lightning_gen.models.gpt import GPT, sample_next_token, warmup_cosine_lr
from lightning_gen.nets.gpt import GPTConfig
from lightning_gen.nets.lstm import LSTMConfig

TINY = dict(vocab_size=17, block_size=16, n_layer=2, n_head=2, n_embd=32)

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(architecture: str = "gpt", **kwargs) -> GPT:
    torch.manual_seed(0)
    args = {**TINY, **kwargs}
    if architecture == "lstm":
        args.pop("n_head")
    return GPT(architecture=architecture, **args).eval()


def test_config_errors_name_the_flag() -> None:
    with pytest.raises(
        ConfigError, match=r"`--model.init_args.n_embd` \(30\) must be a multiple of `--model.init_args.n_head` \(4\)"
    ):
        GPTConfig(vocab_size=10, n_embd=30, n_head=4)
    with pytest.raises(ConfigError, match="`--model.init_args.dropout`"):
        GPTConfig(vocab_size=10, dropout=1.0)
    with pytest.raises(ConfigError, match="`--model.init_args.n_layer`"):
        LSTMConfig(vocab_size=10, n_layer=0)
    with pytest.raises(ConfigError, match="vocab_size"):
        GPT(vocab_size=None)
    with pytest.raises(ConfigError, match="architecture"):
        GPT(vocab_size=10, architecture="rnn")


def test_weight_decay_skips_norms_biases_and_embeddings() -> None:
    model = tiny_model(bias=True, weight_decay=0.1, warmup_steps=2, decay_steps=10)
    trainer = L.Trainer(max_steps=10, logger=False, enable_checkpointing=False)
    model.trainer = trainer
    config = model.configure_optimizers()
    decay, no_decay = config["optimizer"].param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    decayed = {id(p) for p in decay["params"]}
    names = {n for n, p in model.net.named_parameters() if id(p) in decayed}
    assert names and all(n.endswith("weight") and ("c_attn" in n or "c_proj" in n or "c_fc" in n) for n in names)
    assert id(model.net.wte.weight) not in decayed and id(model.net.wpe.weight) not in decayed
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == sum(p.numel() for p in model.parameters())


def test_lr_schedule_is_nanogpt_get_lr() -> None:
    lr, min_lr, warmup, decay = 1e-3, 1e-4, 100, 2000
    assert warmup_cosine_lr(0, lr, min_lr, warmup, decay) == pytest.approx(lr / 101)
    assert warmup_cosine_lr(100, lr, min_lr, warmup, decay) == pytest.approx(lr)
    assert warmup_cosine_lr(1050, lr, min_lr, warmup, decay) == pytest.approx((lr + min_lr) / 2)
    assert warmup_cosine_lr(2000, lr, min_lr, warmup, decay) == pytest.approx(min_lr)
    assert warmup_cosine_lr(5000, lr, min_lr, warmup, decay) == min_lr


@pytest.mark.parametrize("architecture", ["gpt", "lstm"])
def test_kv_cache_generation_equals_full_recompute(architecture: str) -> None:
    model = tiny_model(architecture)
    prompt = torch.randint(0, 17, (3, 5), generator=torch.Generator().manual_seed(1))
    # 20 new tokens from a 5-token prompt overflow block_size 16: the GPT's window starts sliding
    for kwargs in (dict(temperature=0.0), dict(temperature=1.0, top_k=5), dict(temperature=0.9, top_p=0.8)):
        cached = model.generate(prompt, 20, generator=torch.Generator().manual_seed(3), use_cache=True, **kwargs)
        full = model.generate(prompt, 20, generator=torch.Generator().manual_seed(3), use_cache=False, **kwargs)
        assert torch.equal(cached, full), kwargs
        assert torch.equal(cached[:, :5], prompt) and cached.shape == (3, 25)


def test_generate_is_deterministic_for_a_seed() -> None:
    model = tiny_model()
    prompt = torch.tensor([1, 2, 3])
    a = model.generate(prompt, 12, generator=torch.Generator().manual_seed(7))
    b = model.generate(prompt, 12, generator=torch.Generator().manual_seed(7))
    c = model.generate(prompt, 12, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_top_k_and_top_p_restrict_the_support() -> None:
    logits = torch.tensor([[0.0, 3.0, 2.0, 1.0, -1.0]]).repeat(2000, 1)
    gen = torch.Generator().manual_seed(0)
    assert set(sample_next_token(logits, 1.0, top_k=2, generator=gen).unique().tolist()) == {1, 2}
    assert set(sample_next_token(logits, 1.0, top_k=1, generator=gen).unique().tolist()) == {1}
    # softmax = [.032, .644, .237, .087, .012]: p=0.5 keeps only token 1, p=0.85 keeps {1, 2}, 0.9 adds 3
    assert set(sample_next_token(logits, 1.0, top_p=0.5, generator=gen).unique().tolist()) == {1}
    assert set(sample_next_token(logits, 1.0, top_p=0.85, generator=gen).unique().tolist()) == {1, 2}
    assert set(sample_next_token(logits, 1.0, top_p=0.9, generator=gen).unique().tolist()) == {1, 2, 3}
    assert set(sample_next_token(logits, 0.0).unique().tolist()) == {1}
    # without restrictions every token appears
    assert set(sample_next_token(logits, 1.0, generator=gen).unique().tolist()) == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("architecture", ["gpt", "lstm"])
def test_tiny_model_overfits_a_short_text(architecture: str) -> None:
    text = "to be or not to be, that is the question. "
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text * 3])
    x = torch.stack([ids[i : i + 16] for i in range(42)])  # every offset of the 42-character period
    y = torch.stack([ids[i + 1 : i + 17] for i in range(42)])
    torch.manual_seed(0)
    kwargs = dict(vocab_size=len(chars), block_size=16, n_layer=2, n_embd=32, warmup_steps=10, decay_steps=300)
    if architecture == "gpt":
        kwargs["n_head"] = 4
    model = GPT(architecture=architecture, **kwargs)
    model.trainer = L.Trainer(max_steps=300, logger=False, enable_checkpointing=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = model.loss(x, y).item()
    for _ in range(300):
        loss = model.loss(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert first > 2.5 and loss.item() < 0.1
    # and it continues the text greedily
    out = model.generate(ids[20:28], 8, temperature=0.0)
    assert "".join(chars[i] for i in out[0]) == text[20:36]


def test_ema_on_generates_from_the_average_and_sits_in_the_checkpoint(tmp_path) -> None:
    """``ema_decay`` set: ``generate`` (and validation) use the averaged net; the checkpoint holds it."""
    torch.manual_seed(0)
    ids = torch.randint(17, (64, 17))
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(ids[:, :-1], ids[:, 1:]), batch_size=16)
    model = GPT(**TINY, ema_decay=0.5, warmup_steps=0, decay_steps=8, optimizer=lambda p: torch.optim.AdamW(p, lr=1e-2))
    trainer = L.Trainer(
        max_steps=8,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, data)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    prompt = torch.tensor([[1, 2, 3]])
    logits_ema, logits_raw = model.ema.module(prompt), model.net(prompt)
    assert not torch.allclose(logits_ema, logits_raw)
    out = model.generate(prompt, 16, temperature=1.0, top_k=None, generator=gen())
    assert torch.equal(out, GPT._generate(model.ema.module.eval(), prompt, 16, 1.0, None, None, gen(), True))
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    state = torch.load(tmp_path / "m.ckpt", weights_only=False)["state_dict"]
    ema_keys = [k for k in state if k.startswith("ema.module.")]
    assert ema_keys and all(torch.equal(state[k], model.state_dict()[k]) for k in ema_keys)


def test_generate_defaults_are_the_sample_command_defaults() -> None:
    """One source: ``generate``'s defaults are :class:`SamplingOptions`' (``lightning-gen sample``)."""
    import inspect

    from lightning_gen.utils.sampling import SamplingOptions

    params = inspect.signature(GPT.generate).parameters
    for name in ("max_new_tokens", "temperature", "top_k", "top_p"):
        assert params[name].default == getattr(SamplingOptions(), name), name


def test_generate_restores_modes_after_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model().train()

    def fail(*args, **kwargs):
        assert not model.net.training  # generate runs in eval mode
        raise RuntimeError("boom")

    monkeypatch.setattr(model.net, "forward", fail)
    with pytest.raises(RuntimeError, match="boom"):
        model.generate(torch.tensor([[1, 2]]), 3)
    assert model.training and model.net.training


def _one_clipped_step(tmp_path, precision: str | MixedPrecision, clip: float) -> float:
    """Norm of the weight change after one fused-SGD step (lr 1) under ``precision`` with ``gradient_clip_val=clip``."""
    torch.manual_seed(0)
    ids = torch.randint(17, (16, 17))
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(ids[:, :-1], ids[:, 1:]), batch_size=16)
    model = GPT(
        **TINY,
        weight_decay=0.0,
        warmup_steps=0,
        decay_steps=1,
        min_lr=0.0,
        optimizer=lambda p: torch.optim.SGD(p, lr=1.0, fused=True),
    )
    before = torch.cat([p.detach().flatten().clone() for p in model.net.parameters()])
    trainer = L.Trainer(
        max_steps=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        **({"precision": precision} if isinstance(precision, str) else {"plugins": [precision]}),
        gradient_clip_val=clip,
        limit_val_batches=0,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, data)
    after = torch.cat([p.detach().flatten() for p in model.net.parameters()])
    return (after - before).norm().item()


def test_gradient_clipping_applies_to_a_fused_optimizer_under_bf16(tmp_path) -> None:
    """nanoGPT's GPU recipe (bf16 autocast, fused optimizer, clip 1.0): Lightning alone refuses to clip a fused
    optimizer under any mixed precision; bf16 has no loss scale, so the step is clipped to the norm asked for."""
    unclipped = _one_clipped_step(tmp_path, "bf16-mixed", 0.0)
    clipped = _one_clipped_step(tmp_path, "bf16-mixed", 1e-3)
    assert unclipped > 0.1
    assert clipped == pytest.approx(1e-3, rel=1e-3)


def test_fp16_with_a_fused_optimizer_and_clipping_is_one_paragraph(tmp_path) -> None:
    with pytest.raises(
        ConfigError, match=r"cannot clip a fused optimizer under `trainer.precision=16-mixed`.*`fused: false`"
    ):
        _one_clipped_step(
            tmp_path, MixedPrecision("16-mixed", "cpu"), 1e-3
        )  # Lightning's CPU default turns fp16 into bf16
