"""An LSTM language model: the classic autoregressive baseline, with the GPT net's interface.

``forward(idx, cache)`` returns next-token logits ``(B, T, V)``; the cache is the recurrent state
``(h, c)``, so generation feeds one token per step. Context is unbounded (``max_context`` None).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gen_common.errors import ConfigError


@dataclass
class LSTMConfig:
    """Size of an LSTM decoder; invalid values raise a ``ConfigError`` naming the flag."""

    vocab_size: int  # number of token ids; linked from the datamodule by the CLI
    n_layer: int = 2  # stacked LSTM layers
    n_embd: int = 256  # token embedding width and hidden size (equal, so the head ties to the embedding)
    dropout: float = 0.0  # between layers and before the head (training only)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_layer", "n_embd"):
            if getattr(self, name) < 1:
                raise ConfigError(f"`--model.init_args.{name}` must be >= 1, got {getattr(self, name)}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"`--model.init_args.dropout` must be in [0, 1), got {self.dropout}.")


class LSTMState:
    """The recurrent state ``(h, c)``, each ``(n_layer, B, n_embd)``; ``None`` before the first token."""

    def __init__(self) -> None:
        self.state: tuple[Tensor, Tensor] | None = None
        self.length = 0


class LSTMDecoder(nn.Module):
    """Embedding -> ``n_layer`` LSTM -> dropout -> linear head tied to the embedding."""

    def __init__(self, config: LSTMConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.lstm = nn.LSTM(
            config.n_embd,
            config.n_embd,
            config.n_layer,
            batch_first=True,
            dropout=config.dropout if config.n_layer > 1 else 0.0,
        )
        self.drop = nn.Dropout(config.dropout)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight
        nn.init.normal_(self.wte.weight, mean=0.0, std=0.02)

    @property
    def max_context(self) -> int | None:
        return None

    def new_cache(self, batch_size: int, device: torch.device, dtype: torch.dtype = torch.float32) -> LSTMState:
        return LSTMState()

    def forward(self, idx: Tensor, cache: LSTMState | None = None) -> Tensor:
        """Logits ``(B, T, V)``; with ``cache`` the sequence continues from (and updates) its state."""
        x = self.drop(self.wte(idx))  # (B, T, C)
        out, state = self.lstm(x, cache.state if cache is not None else None)  # (B, T, C)
        if cache is not None:
            cache.state, cache.length = state, cache.length + idx.shape[1]
        return self.lm_head(self.drop(out))  # (B, T, V)
