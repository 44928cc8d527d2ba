"""The global rank from each launcher's environment, and the single-process collective view."""

from __future__ import annotations

import pytest

from gen_common.ranks import global_rank, rank_and_world


@pytest.mark.parametrize(
    ("env", "rank"),
    [
        ({}, 0),
        ({"RANK": "3"}, 3),
        ({"LOCAL_RANK": "1"}, 1),
        ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, 1),
        ({"SLURM_PROCID": "2"}, 2),
    ],
)
def test_global_rank_from_the_launcher_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], rank: int) -> None:
    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert global_rank() == rank
    assert rank_and_world() == (0, 1)  # no process group: the collective view is a single process
