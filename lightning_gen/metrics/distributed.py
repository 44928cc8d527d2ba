"""Exact work split and feature gathering across ranks: no padding, no duplicates, every rank calls.

``N`` items are cut into fixed chunks ``[c * chunk, (c + 1) * chunk)``; rank ``r`` of ``W`` owns
chunks ``c % W == r``. Chunk ``c`` of generated samples always uses the same noise (seeded from
``(seed, c)``), and gathered rows are put back in item order, so the features - and every metric -
are the same for any world size and any batch size. Works without ``torch.distributed`` (W = 1).
"""

from __future__ import annotations

import hashlib

import torch
import torch.distributed as dist
from torch import Tensor

from gen_common.ranks import rank_and_world  # noqa: F401 (defined there, used here and re-exported)


def owned_chunks(n: int, chunk: int, rank: int, world: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of the chunks rank ``rank`` processes; over all ranks they tile ``[0, n)`` once."""
    if n < 0 or chunk < 1 or not 0 <= rank < world:
        raise ValueError(
            f"owned_chunks: need n >= 0, chunk >= 1, 0 <= rank < world (got {n}, {chunk}, {rank}, {world})."
        )
    return [(start, min(start + chunk, n)) for start in range(rank * chunk, n, world * chunk)]


def chunk_seed(seed: int, start: int) -> int:
    """The noise seed of the chunk starting at item ``start`` (independent of rank and world size)."""
    return int.from_bytes(hashlib.sha256(f"lightning_gen:{seed}:{start}".encode()).digest()[:8], "little") & (
        (1 << 63) - 1
    )


def gather_rows(x: Tensor, device: torch.device | None = None) -> Tensor:
    """Concatenate every rank's ``(n_r, ...)`` rows in rank order (sizes may differ); identity when W = 1.

    Every rank must call it. Rows travel on ``device`` (the rank's accelerator for NCCL, CPU for gloo).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    device = device or (
        torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    )
    world = dist.get_world_size()
    local = x.to(device).contiguous()
    shape = torch.tensor(list(local.shape), device=device, dtype=torch.long)
    shapes = [torch.zeros_like(shape) for _ in range(world)]
    dist.all_gather(shapes, shape)  # a rank with no rows may not know the width: take the max of every dim
    counts = [int(s[0].item()) for s in shapes]
    full = torch.stack(shapes).max(0).values.tolist()
    padded = local.new_zeros(full)
    padded[tuple(slice(0, d) for d in local.shape)] = local
    out = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(out, padded)
    return torch.cat([o[:c] for o, c in zip(out, counts)]).to(x.device)


def gather_in_order(rows: dict[str, Tensor], index: Tensor, n: int) -> dict[str, Tensor]:
    """Gather each rank's rows and their item indices, and return all ``n`` rows sorted by index."""
    all_index = gather_rows(index)
    if all_index.numel() != n or not torch.equal(
        torch.sort(all_index).values, torch.arange(n, device=all_index.device)
    ):
        raise RuntimeError(
            f"gather_in_order: ranks returned {all_index.numel()} rows for {n} items (the split is not exact)."
        )
    order = torch.argsort(all_index)
    return {k: gather_rows(v)[order] for k, v in rows.items()}


def broadcast_object(obj: object) -> object:
    """Rank 0's ``obj`` on every rank (identity without distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
