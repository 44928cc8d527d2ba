"""A W&B logger that never prompts and never hangs: it decides online/offline in seconds.

W&B itself, with no API key, waits forever at a login prompt in a terminal, and with a key but
no network blocks for minutes. :func:`resolve_wandb_mode` decides first (environment, API key,
a time-boxed TCP probe of the W&B host) and the logger tells the user in one line where an
offline run lives and how to upload it.
"""
from __future__ import annotations

import netrc
import os
import socket
from typing import Any, Literal
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only

WandbMode = Literal["auto", "online", "offline"]


def _wandb_host() -> str:
    return urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"


def has_wandb_api_key() -> bool:
    """True when W&B would find a key: ``WANDB_API_KEY`` or a ``~/.netrc`` entry for its host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(_wandb_host()) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_wandb_mode(mode: WandbMode = "auto", probe_timeout_s: float = 3.0) -> tuple[str, str]:
    """Return ``("online" | "offline" | "disabled", reason)`` without ever blocking longer than the probe.

    ``auto`` honours ``WANDB_MODE``, goes offline with no API key, and otherwise probes the W&B
    host with a TCP connect bounded by ``probe_timeout_s``.
    """
    if mode != "auto":
        return mode, f"run.wandb={mode}"
    env_mode = os.environ.get("WANDB_MODE", "").lower()
    if env_mode in ("offline", "dryrun"):
        return "offline", "WANDB_MODE=offline"
    if env_mode == "disabled":
        return "disabled", "WANDB_MODE=disabled"
    if env_mode == "online":
        return "online", "WANDB_MODE=online"
    if not has_wandb_api_key():
        return "offline", "no W&B API key"
    host = _wandb_host()
    try:
        with socket.create_connection((host, 443), timeout=probe_timeout_s):
            return "online", f"{host} reachable"
    except OSError:
        return "offline", f"{host} unreachable"


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger`` with ``mode="auto"``: online when it can be, offline otherwise.

    Args:
        mode: ``auto`` (decide from environment, key and network), ``online`` or ``offline``.
        probe_timeout_s: Bound on the network probe and on W&B's own ``init`` wait.
        **kwargs: Passed to Lightning's ``WandbLogger`` (``project``, ``name``, ``id``, ``save_dir``...).
    """

    def __init__(self, mode: WandbMode = "auto", probe_timeout_s: float = 3.0, **kwargs: Any) -> None:
        resolved, self.mode_reason = resolve_wandb_mode(mode, probe_timeout_s)
        if resolved == "disabled":
            kwargs["mode"] = "disabled"
        kwargs.setdefault("offline", resolved == "offline")
        import wandb

        settings = kwargs.pop("settings", None) or wandb.Settings()
        settings.init_timeout = max(probe_timeout_s * 10, 30.0)
        if settings.git_root is None:  # W&B would look for the code's repo in the run dir (save_dir)
            settings.git_root = os.getcwd()
        if resolved == "offline":
            settings.silent = True  # our one line replaces W&B's banner
        super().__init__(settings=settings, **kwargs)
        self._wandb_init.pop("anonymous", None)  # Lightning always passes it; W&B warns it is obsolete
        self.offline = resolved == "offline"
        self._announced = False

    @property
    def experiment(self) -> Any:
        run = super().experiment
        if not self._announced and run is not None:
            self._announced = True
            self._announce(run)
        return run

    @rank_zero_only
    def _announce(self, run: Any) -> None:
        if self.offline and getattr(run, "dir", None):
            run_dir = os.path.dirname(run.dir)
            print(f"W&B offline ({self.mode_reason}): run saved in {run_dir}; upload it later with `wandb sync {run_dir}`")


def read_offline_history(run_path: str | os.PathLike, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """The logged history rows of a local W&B run (``offline-run-*`` dir or ``.wandb`` file).

    Reads the transaction log with ``wandb leet inspect --json``, so offline runs can be checked
    and compared without the W&B server.
    """
    import json
    import shutil
    import subprocess
    import sys

    wandb_bin = shutil.which("wandb") or os.path.join(os.path.dirname(sys.executable), "wandb")
    out = subprocess.run(
        [wandb_bin, "leet", "inspect", "--json", os.fspath(run_path)],
        capture_output=True, text=True, timeout=timeout_s, check=True,
    ).stdout
    rows = []
    for line in out.splitlines():
        if '"type":"history"' in line:
            rows.append(json.loads(line)["history"]["item"])
    return rows
