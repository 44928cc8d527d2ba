"""The GPT net: causal masking, weight tying and GPT-2 init, the KV cache against a full forward."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_gen.nets.gpt import GPT as GPTNet
from lightning_gen.nets.gpt import GPTConfig

TINY = dict(vocab_size=17, block_size=16, n_layer=2, n_head=2, n_embd=32)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("bias", [False, True])
def test_changing_a_future_token_never_changes_an_earlier_logit(bias: bool) -> None:
    net = GPTNet(GPTConfig(**TINY, bias=bias)).eval()
    idx = torch.randint(0, 17, (2, 16), generator=torch.Generator().manual_seed(0))
    base = net(idx)
    for t in (3, 9, 15):
        changed = idx.clone()
        changed[:, t] = (changed[:, t] + 1) % 17
        out = net(changed)
        torch.testing.assert_close(out[:, :t], base[:, :t], rtol=0, atol=1e-6)
        assert not torch.allclose(out[:, t], base[:, t])  # the changed position itself does move


def test_weight_tying_and_gpt2_init() -> None:
    net = GPTNet(GPTConfig(**TINY))
    assert net.lm_head.weight is net.wte.weight
    std = net.blocks[0].attn.c_proj.weight.std().item()
    assert abs(std - 0.02 / math.sqrt(2 * TINY["n_layer"])) < 0.004
    assert abs(net.blocks[0].mlp.c_fc.weight.std().item() - 0.02) < 0.003


def test_cached_logits_match_full_forward() -> None:
    net = GPTNet(GPTConfig(**TINY)).eval()
    idx = torch.randint(0, 17, (2, 12), generator=torch.Generator().manual_seed(0))
    full = net(idx)
    cache = net.new_cache(2, idx.device)
    parts = [net(idx[:, :5], cache), net(idx[:, 5:9], cache)] + [net(idx[:, t : t + 1], cache) for t in range(9, 12)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)
