"""A notice for a precision that this machine can only emulate.

``bf16-mixed`` (or ``bf16-true``) on a CPU without bf16 instructions (AVX512-BF16 or AMX) is
emulated by PyTorch: on the 2-core AVX2 machine this project is developed on, one training step
of ``experiments/gpt_shakespeare_char_gpu.yaml``'s net (batch 4 x 256, eager, 1 thread) took
18.6-19.2 s under bf16 autocast against 1.7-1.8 s in fp32 (11x). The run is correct, only slow,
so the CLI says so in one line and keeps the precision the user chose.
"""

from __future__ import annotations

import torch


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX tiles)."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def emulated_precision_notice(precision: str, on_cpu: bool, native_bf16: bool | None = None) -> str | None:
    """One line when ``precision`` is bf16 on a CPU without bf16 instructions; else ``None``."""
    if not on_cpu or not str(precision).startswith("bf16"):
        return None
    native = cpu_has_bf16() if native_bf16 is None else native_bf16
    if native:
        return None
    return (
        f"lightning-gen: warning: `trainer.precision={precision}` on a CPU without bf16 instructions (no AVX512-BF16 "
        "or AMX) is emulated and runs several times slower than fp32 (11x for a GPT training step measured on an "
        "AVX2 CPU); for a CPU run pass `--trainer.precision=32-true`."
    )
