"""Run ids: ranks launched outside Lightning need a shared one (``--run.id``, the launcher's, SLURM's)."""

from __future__ import annotations

import pytest

from gen_common.errors import ConfigError
from lightning_gen.runs.env import RUN_ID as RUN_ID_ENV
from lightning_gen.runs.layout import new_run_id


def test_externally_launched_ranks_need_a_shared_run_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="--run.id NAME"):
        new_run_id()
    monkeypatch.setenv(RUN_ID_ENV, "shared")
    assert new_run_id() == "shared"
    monkeypatch.delenv(RUN_ID_ENV)
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    assert new_run_id() == "slurm-77"
