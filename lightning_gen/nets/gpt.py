"""A GPT-2 style decoder (after karpathy/nanoGPT ``model.py``): pre-LN blocks, causal SDPA, tied embeddings.

Plain ``nn.Module``s: no loss, no optimizer, no Lightning. ``forward(idx, cache)`` returns logits
for every position; with a :class:`KVCache` it appends the new keys/values and attends to all
cached ones, so generation costs one token per step instead of the whole context.
Shape letters: B batch, T time (tokens), C channels (``n_embd``), nh heads, hs head size, V vocab.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gen_common.errors import ConfigError


@dataclass
class GPTConfig:
    """Size of a GPT decoder (nanoGPT's ``GPTConfig``); invalid values raise a ``ConfigError`` naming the flag."""

    vocab_size: int  # number of token ids; linked from the datamodule by the CLI
    block_size: int = 64  # context length (learned absolute positions)
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads per block
    n_embd: int = 128  # width C; must be a multiple of n_head
    dropout: float = 0.0  # on attention weights, residual branches and embeddings (training only)
    bias: bool = False  # biases in Linear and LayerNorm layers (GPT-2: True; a bit better/faster: False)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise ConfigError(f"`--model.init_args.{name}` must be >= 1, got {getattr(self, name)}.")
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"`--model.init_args.n_embd` ({self.n_embd}) must be a multiple of `--model.init_args.n_head` ({self.n_head})."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"`--model.init_args.dropout` must be in [0, 1), got {self.dropout}.")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head


class KVCache:
    """Preallocated keys and values of every layer, ``(B, nh, block_size, hs)`` each, filled up to ``length``."""

    def __init__(self, config: GPTConfig, batch_size: int, device: torch.device, dtype: torch.dtype) -> None:
        shape = (batch_size, config.n_head, config.block_size, config.head_size)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.capacity = config.block_size
        self.length = 0


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        mask, is_causal = None, True
        if cache is not None:
            past = cache.length
            cache.keys[layer][:, :, past : past + T] = k
            cache.values[layer][:, :, past : past + T] = v
            k = cache.keys[layer][:, :, : past + T]  # (B, nh, past + T, hs)
            v = cache.values[layer][:, :, : past + T]
            if past > 0:  # queries sit at positions past..past+T-1: token i sees keys 0..past+i
                is_causal = False
                mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past) if T > 1 else None
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0, is_causal=is_causal
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble heads: (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, C)


class Block(nn.Module):
    """Pre-LN transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Token + position embeddings, ``n_layer`` pre-LN blocks, final LayerNorm, LM head tied to the token embedding."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying (Press & Wolf, 2017)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by 1/sqrt(2 * n_layer)
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    @property
    def max_context(self) -> int:
        """Longest input the net accepts; generation crops older tokens beyond it."""
        return self.config.block_size

    def num_parameters(self, non_embedding: bool = True) -> int:
        """Parameter count; position embeddings excluded by default (the token ones are the tied head)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding else n

    def new_cache(self, batch_size: int, device: torch.device, dtype: torch.dtype = torch.float32) -> KVCache:
        return KVCache(self.config, batch_size, device, dtype)

    def forward(self, idx: Tensor, cache: KVCache | None = None) -> Tensor:
        """Logits ``(B, T, V)`` of the next token at every position of ``idx`` ``(B, T)``.

        With ``cache``, ``idx`` continues the cached tokens (positions ``cache.length`` on) and the
        cache grows by ``T``; ``cache.length + T`` must stay within ``block_size``.
        """
        B, T = idx.size()
        start = cache.length if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"Sequence of {start + T} tokens is longer than block_size {self.config.block_size}.")
        pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)  # (T,)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer)
        if cache is not None:
            cache.length += T
        return self.lm_head(self.ln_f(x))  # (B, T, V)
