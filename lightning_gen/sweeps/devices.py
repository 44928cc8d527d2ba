"""Devices of the trials a sweep process runs at once: each its own ``CUDA_VISIBLE_DEVICES`` and rendezvous port.

``sweep --workers N --devices-per-trial K`` cuts the sweep process's visible CUDA devices into N slots of K.
A trial takes a free slot when it starts and gives it back when it ends, so the next trial starts on the freed
devices at once (Optuna's ``n_jobs`` threads start a trial as soon as one ends). Every trial also gets a
``MASTER_PORT`` no other trial of this process holds, so two trials running DDP never share a rendezvous.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from gen_common.errors import ConfigError

VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"


def visible_devices() -> list[str]:
    """The CUDA devices this process may use: ``CUDA_VISIBLE_DEVICES`` if set (ids or UUIDs), else every GPU."""
    raw = os.environ.get(VISIBLE_DEVICES)
    if raw is not None:
        return [d.strip() for d in raw.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def check_device_slots(workers: int, per_trial: int, devices: list[str]) -> None:
    """Refuse, before any trial starts, ``workers`` slots of ``per_trial`` devices that the devices cannot fill."""
    if per_trial < 0:
        raise ConfigError("`--devices-per-trial` must be >= 0 (0: every trial sees all devices).")
    if per_trial == 0 or workers * per_trial <= len(devices):
        return
    seen = f"{VISIBLE_DEVICES}={','.join(devices)}" if devices else "no CUDA device"
    fits = len(devices) // per_trial
    fix = (
        f"Lower `--workers` to {fits}, or run more sweep processes (other nodes) with `--storage` on one study."
        if fits
        else "Give the sweep process more devices (`CUDA_VISIBLE_DEVICES`), or `--devices-per-trial 0` for CPU trials."
    )
    raise ConfigError(
        f"`--workers {workers}` trials of `--devices-per-trial {per_trial}` need {workers * per_trial} devices, but "
        f"this process sees {len(devices)} ({seen}). {fix} Nothing was run."
    )


class TrialDevices:
    """Device slots and rendezvous ports for the trials one sweep process runs at once (thread-safe)."""

    def __init__(self, workers: int, per_trial: int, devices: list[str] | None = None) -> None:
        self.per_trial = per_trial
        self._slots: queue.Queue[list[str]] = queue.Queue()
        if per_trial > 0:
            devices = visible_devices() if devices is None else devices
            check_device_slots(workers, per_trial, devices)
            for i in range(len(devices) // per_trial):
                self._slots.put(devices[i * per_trial : (i + 1) * per_trial])
        self._ports: set[int] = set()
        self._lock = threading.Lock()

    @contextmanager
    def lease(self) -> Iterator[dict[str, str]]:
        """The environment of one trial while it runs: its devices (if per trial) and its own ``MASTER_PORT``."""
        slot = self._slots.get() if self.per_trial > 0 else None
        port = self._free_port()
        try:
            env = {"MASTER_PORT": str(port)}
            if slot is not None:
                env[VISIBLE_DEVICES] = ",".join(slot)
            yield env
        finally:
            with self._lock:
                self._ports.discard(port)
            if slot is not None:
                self._slots.put(slot)

    def _free_port(self) -> int:
        """A loopback port free now and held by no other running trial of this process."""
        with self._lock:
            while True:
                port = free_loopback_port()
                if port not in self._ports:
                    self._ports.add(port)
                    return port


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now (a trial's ``MASTER_PORT``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
