"""Text sampling settings, defined once: ``lightning-gen sample`` and text families' ``generate`` read them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingOptions:
    """How a language model continues a prompt (nanoGPT's ``sample.py`` defaults).

    Args:
        max_new_tokens: Tokens generated after the prompt.
        temperature: Softmax temperature; 0 = greedy.
        top_k: Sample among the ``k`` likeliest tokens only (``None``: all).
        top_p: Nucleus sampling: the smallest set of tokens with this total probability (``None``: off).
    """

    max_new_tokens: int = 500
    temperature: float = 0.8
    top_k: int | None = 200
    top_p: float | None = None
