"""A device set per trial: disjoint while trials overlap, freed at once when one ends, too few refused up front."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from gen_common.errors import ConfigError
from lightning_gen.sweeps.devices import TrialDevices
from tests.helpers.cli import run_main
from tests.helpers.ops import cli_env
from tests.unit.commands.test_sweep import GOOD


def test_overlapping_trials_get_disjoint_devices_and_ports_and_a_freed_slot_is_taken_at_once() -> None:
    pool = TrialDevices(workers=2, per_trial=2, devices=["0", "1", "2", "3"])
    with pool.lease() as a, pool.lease() as b:
        assert {a["CUDA_VISIBLE_DEVICES"], b["CUDA_VISIBLE_DEVICES"]} == {"0,1", "2,3"}
        assert a["MASTER_PORT"] != b["MASTER_PORT"]
        third: dict[str, str] = {}
        waiter = threading.Thread(target=lambda: third.update(pool.lease().__enter__()))
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive()  # both slots are held: the third trial waits ...
        freed = a["CUDA_VISIBLE_DEVICES"]
    waiter.join(5)
    assert third["CUDA_VISIBLE_DEVICES"] in (freed, b["CUDA_VISIBLE_DEVICES"])  # ... and starts when one ends


def test_cpu_trials_get_only_their_own_rendezvous_port() -> None:
    pool = TrialDevices(workers=3, per_trial=0, devices=[])
    with pool.lease() as a, pool.lease() as b, pool.lease() as c:
        assert set(a) == {"MASTER_PORT"} and len({a["MASTER_PORT"], b["MASTER_PORT"], c["MASTER_PORT"]}) == 3


@pytest.mark.parametrize(
    ("workers", "per_trial", "devices", "fix"),
    [(3, 2, ["0", "1", "2", "3"], "Lower `--workers` to 2"), (1, 1, [], "Give the sweep process more devices")],
)
def test_more_devices_than_visible_are_refused_in_one_paragraph(
    workers: int, per_trial: int, devices: list[str], fix: str
) -> None:
    with pytest.raises(ConfigError) as error:
        TrialDevices(workers, per_trial, devices)
    assert f"need {workers * per_trial} devices" in str(error.value) and fix in str(error.value)


def test_sweep_command_refuses_too_few_devices_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(GOOD.format(config="tiny.yaml"))
    env = {**cli_env(), "CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    args = ["sweep", "s.yaml", "--backend", "optuna", "--workers", "3", "--devices-per-trial", "2"]
    proc = run_main(args, tmp_path, env)
    assert proc.returncode == 1
    assert "need 6 devices, but this process sees 4 (CUDA_VISIBLE_DEVICES=0,1,2,3)" in proc.stderr
    assert "Nothing was run." in proc.stderr and sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]
