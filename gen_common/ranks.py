"""Which process is this: rank and world size, shared by ``datamodules`` and ``lightning_gen``.

Two questions, two functions: :func:`rank_and_world` is the collective view (what
``torch.distributed`` says, ``(0, 1)`` when no process group is up: work is split and gathered by
it); :func:`global_rank` also answers before the process group starts, from the launcher's
environment (deciding who prints or takes a lock). Neither imports torch when it is not loaded.
"""

from __future__ import annotations

import os
import sys


def _initialized_dist():  # noqa: ANN202 - torch.distributed or None
    dist = sys.modules.get("torch.distributed")  # not imported yet: no process group can be up
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist
    return None


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialized process group; ``(0, 1)`` without one."""
    dist = _initialized_dist()
    return (dist.get_rank(), dist.get_world_size()) if dist is not None else (0, 1)


def global_rank() -> int:
    """This process's global rank: the process group's, else as its launcher set it up.

    torchrun gives ``RANK``; Lightning's own launcher gives the ranks it starts ``LOCAL_RANK``
    (checked before ``SLURM_PROCID``, which those ranks inherit from a SLURM allocation); srun
    gives ``SLURM_PROCID``. A process with none of these is the launcher, i.e. rank 0.
    """
    dist = _initialized_dist()
    if dist is not None:
        return dist.get_rank()
    env = os.environ
    if env.get("RANK", "").isdigit():
        return int(env["RANK"])
    if env.get("LOCAL_RANK", "").isdigit():
        node, local = int(env.get("NODE_RANK") or env.get("GROUP_RANK") or 0), int(env["LOCAL_RANK"])
        return node * int(env.get("LOCAL_WORLD_SIZE") or 1) + local  # > 0 on every node but the first
    for key in ("SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if env.get(key, "").isdigit():
            return int(env[key])
    return 0


def launching_rank_zero() -> bool:
    """Whether this process is global rank 0 as its launcher set it up (before any DDP init): it prints and locks."""
    return global_rank() == 0
