"""The evaluator's exact DDP split: owned chunks tile the set, and a real 2-process gloo group gives the single-process numbers.

The workers are forked: they inherit the imports, so the test takes seconds."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lightning_gen.metrics.cache import FeatureCache
from lightning_gen.metrics.distributed import owned_chunks
from lightning_gen.metrics.evaluator import EvalSettings, ImageEvaluator
from tests.helpers.metrics import BlobSampler, fake_extractor, families, real_dataset


@pytest.mark.parametrize("n,chunk,world", [(10, 3, 2), (7, 100, 4), (100, 7, 3), (2, 1, 5)])
def test_owned_chunks_tile_exactly(n: int, chunk: int, world: int) -> None:
    items = [i for r in range(world) for a, b in owned_chunks(n, chunk, r, world) for i in range(a, b)]
    assert sorted(items) == list(range(n))  # no padding, no duplicates


# --- 2-process DDP (gloo) ------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out_dir: str, cache_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        extractor = fake_extractor()
        sampler = BlobSampler()
        ev = ImageEvaluator(
            families(),
            extractor,
            EvalSettings(num_samples=23, num_real=37, sample_chunk=4, batch_size=5),
            FeatureCache(cache_dir),
        )
        result = ev.evaluate(sampler, real_dataset(), "synthetic")
        # second evaluation: cache warm on rank 0, others do no real work either
        calls_before = extractor.calls
        again = ev.evaluate(sampler, real_dataset(), "synthetic")
        record = {
            "values": result.values,
            "again": again.values,
            "drawn": sampler.drawn,
            "calls": calls_before,
            "calls_second": extractor.calls - calls_before,
        }
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(record))
    finally:
        dist.destroy_process_group()


def test_two_process_ddp_matches_single_process(tmp_path: Path) -> None:
    single = ImageEvaluator(
        families(), fake_extractor(), EvalSettings(num_samples=23, num_real=37, sample_chunk=4, batch_size=5)
    )
    reference = single.evaluate(BlobSampler(), real_dataset(), "synthetic").values
    mp.start_processes(
        _ddp_worker,
        args=(2, _free_port(), str(tmp_path), str(tmp_path / "cache")),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for rec in ranks:
        assert rec["values"] == pytest.approx(reference, rel=1e-9, abs=1e-12)  # same numbers on every rank
        assert rec["again"] == rec["values"]
    # exact split: 23 = 12 + 11 generated images (chunks of 4: 0,8,16 | 4,12,20), real 37 likewise
    assert sorted(r["drawn"] for r in ranks) == [2 * 11, 2 * 12]
    assert sum(r["calls"] for r in ranks) == 23 + 37
    assert sum(r["calls_second"] for r in ranks) == 23  # cache hit: no real images anywhere
