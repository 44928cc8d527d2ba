"""A W&B logger that never prompts and never hangs: it decides online/offline in seconds.

W&B itself, with no API key, waits forever at a login prompt in a terminal, and with a key but
no network blocks for minutes. :func:`resolve_wandb_mode` decides first (environment, API key,
a time-boxed probe of the server W&B will really dial) and the logger tells the user in one line where an
offline run lives and how to upload it.

Dashboards that compare: every run defines its x-axis (``trainer/global_step``) and its summaries
(the model's ``monitor`` keeps its best value, min or max as the contract says; the rest their
last), and the CLI's config is also logged flat under the names ``compare`` shows
(``model.optimizer.lr``), so W&B's runs table and parallel-coordinates panel read like ``compare``.
"""

from __future__ import annotations

import netrc
import os
import shlex
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only

from gen_common.errors import LightningGenError
from lightning_gen.utils.trees import flatten, short_key

WandbMode = Literal["auto", "online", "offline"]
#: W&B's x-axis for every metric: Lightning's global step, logged with each row
STEP_METRIC = "trainer/global_step"


def wandb_base_url() -> str:
    """The server URL W&B will dial, resolved as W&B does it.

    W&B reads its settings files (``~/.config/wandb/settings``, ``./wandb/settings``) and
    ``WANDB_BASE_URL``; its default host is not ``api.wandb.ai`` in every version (0.31:
    ``https://api.forge.coreweave.com``). A fresh ``Settings`` keeps W&B's global state untouched.
    """
    from wandb import Settings

    settings = Settings(silent=True)
    settings.settings_system = str(
        Path(os.environ.get("WANDB_CONFIG_DIR", "~/.config/wandb")).expanduser() / "settings"
    )
    settings.update_from_system_settings()
    settings.update_from_env_vars(dict(os.environ))
    return settings.base_url


def has_wandb_api_key(base_url: str | None = None) -> bool:
    """True when W&B would find a key: ``WANDB_API_KEY`` or a ``~/.netrc`` entry for its server (default: :func:`wandb_base_url`)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        auth = netrc.netrc(os.environ.get("NETRC") or None)
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    if not auth.hosts:
        return False
    parsed = urlparse(base_url or wandb_base_url())
    return any(auth.authenticators(name) is not None for name in (parsed.netloc, parsed.hostname) if name)


def probe(url: str, timeout_s: float) -> str | None:
    """``None`` when the server at ``url`` answers HTTP(S) within ``timeout_s`` (any status), else why not.

    A request, not a bare TCP connect: proxies and firewalls that accept every connection do not
    count as reachable; TLS must verify as it will for W&B. The request runs in a daemon thread,
    so neither a slow DNS lookup nor the interpreter's exit waits for it.
    """
    outcome: list[str | None] = []
    silent = f"no answer within {timeout_s:g} s"  # the same words whether the socket or the join times out first

    def request() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s).close()
            outcome.append(None)
        except urllib.error.HTTPError:
            outcome.append(None)  # the server answered (401, 404...): reachable
        except TimeoutError:
            outcome.append(silent)
        except urllib.error.URLError as err:
            outcome.append(
                silent
                if isinstance(err.reason, TimeoutError)
                else str(getattr(err.reason, "strerror", None) or err.reason)
            )
        except Exception as err:  # noqa: BLE001 - timeouts, resets, bad URLs: all mean "not reachable"
            outcome.append(f"{type(err).__name__}: {err}")

    thread = threading.Thread(target=request, name="wandb-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return outcome[0] if outcome else silent


def resolve_wandb_mode(mode: WandbMode = "auto", probe_timeout_s: float = 3.0) -> tuple[str, str]:
    """Return ``("online" | "offline" | "disabled", reason)`` without ever blocking longer than the probe.

    ``auto`` honours ``WANDB_MODE``, goes offline with no API key, and otherwise probes the server
    W&B will use (:func:`wandb_base_url`) with a request bounded by ``probe_timeout_s``.
    ``online`` (asked for with ``--run.wandb=online`` or ``WANDB_MODE=online``) gets the same
    checks, and a :class:`LightningGenError` when they fail, instead of W&B's traceback minutes later.
    """
    if mode == "auto":
        env_mode = os.environ.get("WANDB_MODE", "").lower()
        if env_mode in ("offline", "dryrun"):
            return "offline", "WANDB_MODE=offline"
        if env_mode == "disabled":
            return "disabled", "WANDB_MODE=disabled"
        if env_mode == "online":
            return _checked_online("WANDB_MODE=online", probe_timeout_s)
        if not has_wandb_api_key():
            return "offline", "no W&B API key"
        url = wandb_base_url()
        why = probe(url, probe_timeout_s)
        return ("offline", f"{url} unreachable ({why})") if why else ("online", f"{url} reachable")
    if mode == "online":
        return _checked_online("--run.wandb=online", probe_timeout_s)
    return mode, f"run.wandb={mode}"


def check_forced_online(mode: WandbMode, probe_timeout_s: float = 3.0) -> None:
    """Raise the one-paragraph error now if W&B is forced online (``online``, or ``auto`` with
    ``WANDB_MODE=online``) and cannot work: the CLI calls this before any file is written."""
    if mode == "online" or (mode == "auto" and os.environ.get("WANDB_MODE", "").lower() == "online"):
        resolve_wandb_mode(mode, probe_timeout_s)


def _checked_online(asked_by: str, probe_timeout_s: float) -> tuple[str, str]:
    url = wandb_base_url()
    fixes = (
        "Fix: train offline with `--run.wandb=offline` (upload later with `wandb sync`), or use `--run.wandb=auto` "
        "(online only when the server answers)"
    )
    if not has_wandb_api_key(url):
        raise LightningGenError(
            f"W&B online ({asked_by}) needs an API key for {url}, and none is set (WANDB_API_KEY, or `wandb login`, "
            f"which writes ~/.netrc). {fixes}, or log in first. Nothing was written."
        )
    why = probe(url, probe_timeout_s)
    if why:
        raise LightningGenError(
            f"W&B online ({asked_by}) cannot reach its server {url} ({why}). {fixes}, or point W&B at a server this "
            "machine reaches with WANDB_BASE_URL (or `wandb login --host URL`). Nothing was written."
        )
    return "online", f"{asked_by}, {url} reachable"


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
    def log_hyperparams(self, params: Any) -> None:
        """Log ``params`` as Lightning does; the CLI's ``{"config": <resolved config>}`` also flat, under short names.

        The nested config stays under ``config``; beside it each leaf is a top-level key named as
        ``compare`` names it (``model.optimizer.lr``), which W&B's tables and panels show as columns.
        """
        super().log_hyperparams(params)
        config = params.get("config") if isinstance(params, Mapping) else None
        if isinstance(config, Mapping):
            flat = flat_hyperparameters(config)
            if flat:
                self.experiment.config.update(flat, allow_val_change=True)

    @rank_zero_only
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """The Trainer calls this with its LightningModule as each stage starts (a resume too): define the metrics.

        Rank 0 only (the other ranks have no W&B run) and no collective: it reads attributes only.
        """
        super().log_graph(model, input_array)
        self.define_metrics(metric_directions(model))

    @rank_zero_only
    def define_metrics(self, directions: Mapping[str, str]) -> None:
        """Every metric against :data:`STEP_METRIC`, summarized by its last value; each metric of
        ``directions`` (``{name: "min" | "max"}``) by its best value instead."""
        define = getattr(self.experiment, "define_metric", None)
        if define is None:  # a dummy experiment
            return
        define(STEP_METRIC)
        define("*", step_metric=STEP_METRIC, step_sync=True)  # W&B's default summary: the last value
        for name, mode in directions.items():
            define(name, step_metric=STEP_METRIC, step_sync=True, summary=mode)

    @rank_zero_only
    def _announce(self, run: Any) -> None:
        if self.offline and getattr(run, "dir", None):
            run_dir = os.path.dirname(run.dir)
            print(
                f"W&B offline ({self.mode_reason}): run saved in {run_dir}; "
                f"upload it later with `{wandb_sync_command([run_dir])}`"
            )


def metric_directions(model: Any) -> dict[str, str]:
    """``{metric: "min" | "max"}`` known for ``model``'s run: its contract's ``monitor``, then what the
    Trainer's ``ModelCheckpoint`` callbacks monitor (a config's own checkpoint, e.g. ``eval/fid`` min)."""
    directions: dict[str, str] = {}
    name, mode = getattr(model, "monitor", None) or (None, "min")
    if name:
        directions[name] = mode
    trainer = getattr(model, "_trainer", None)  # LightningModule.trainer raises when detached
    for callback in getattr(trainer, "checkpoint_callbacks", None) or []:
        if getattr(callback, "monitor", None) and getattr(callback, "mode", None) in ("min", "max"):
            directions.setdefault(callback.monitor, callback.mode)
    return directions


def flat_hyperparameters(config: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved config's leaves under the names ``compare`` shows: ``{"model.optimizer.lr": 0.001, ...}``.

    The top-level ``config`` (the ``--config`` files) is left out: that W&B key holds the nested config.
    """
    return {short_key(key): value for key, value in flatten(dict(config)).items() if key != "config"}


def read_offline_summary(run_path: str | os.PathLike, timeout_s: float = 60.0) -> dict[str, Any]:
    """A local W&B run's state as ``wandb leet inspect --summary --json`` gives it: ``summary``, ``config``, ``state``...

    A metric defined with a summary reads ``{"max": 3.0}`` there; the others their last value.
    """
    import json

    return json.loads(_leet_inspect(run_path, ["--summary", "--json"], timeout_s))


def _leet_inspect(run_path: str | os.PathLike, options: list[str], timeout_s: float) -> str:
    import shutil
    import subprocess
    import sys

    wandb_bin = shutil.which("wandb") or os.path.join(os.path.dirname(sys.executable), "wandb")
    return subprocess.run(
        [wandb_bin, "leet", "inspect", *options, os.fspath(run_path)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=True,
    ).stdout


def read_offline_history(run_path: str | os.PathLike, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """The logged history rows of a local W&B run (``offline-run-*`` dir or ``.wandb`` file).

    Reads the transaction log with ``wandb leet inspect --json``, so offline runs can be checked
    and compared without the W&B server.
    """
    import json

    out = _leet_inspect(run_path, ["--json"], timeout_s)
    rows = []
    for line in out.splitlines():
        if '"type":"history"' in line:
            rows.append(json.loads(line)["history"]["item"])
    return rows


def wandb_sync_command(
    paths: list[str | os.PathLike], run_id: str | None = None, project: str | None = None, glob: str = ""
) -> str:
    """The ``wandb sync`` command line for ``paths``, each shell-quoted (a path with a space stays one word).

    ``glob`` (e.g. ``/offline-run-*``) is appended unquoted to the last path, so the shell still expands it.
    """
    words = ["wandb", "sync"]
    if run_id is not None:
        words += ["--id", shlex.quote(run_id)]
    if project is not None:
        words += ["-p", shlex.quote(project)]
    quoted = [shlex.quote(os.fspath(p)) for p in paths]
    if glob and quoted:
        quoted[-1] += glob
    return " ".join(words + quoted)


def wandb_resume_kwargs(
    mode: str,
    project: str,
    run_id: str,
    log_step: int | None,
    rewind: bool = True,
    run_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """``wandb.init`` arguments that continue run ``run_id`` (``mode``: ``run.wandb``; ``log_step``: the checkpoint's).

    Online: ``resume_from="<id>?_step=<k>"`` (W&B rewind) where ``k`` is the run's first row with
    ``trainer/global_step`` after the checkpoint's logger step (read with the W&B API, time-boxed),
    so the rows logged between the checkpoint and the crash are replaced; ``resume="must"`` when
    nothing needs dropping, the API cannot tell, or ``rewind`` (``run.wandb_rewind``) is off.
    Offline, W&B cannot reopen a run (``resume`` is not checked offline): it writes a new
    ``offline-run-*-<id>`` folder (a *segment*) with the same id and ``_step`` from 0.
    ``trainer/global_step`` (Lightning's x-axis in W&B) continues from the checkpoint;
    ``wandb sync --id <id> seg1 seg2 ...`` uploads the segments in start order into one run.
    The earlier segment still holds the rows logged between the checkpoint and the crash
    (W&B's offline ``.wandb`` log cannot be rewritten with its public API); the local
    ``metrics.csv`` is the exact, truncated history. ``run_dir``: the run's folder, named (quoted) in
    the printed ``wandb sync`` command; ``None``: a ``<run dir>`` placeholder.
    """
    mode, _ = resolve_wandb_mode(mode if mode != "disabled" else "offline")
    if mode != "online":
        if mode == "offline":
            if run_dir is None:
                command = f"{wandb_sync_command([], run_id, project)} <run dir>/wandb/offline-run-*"
            else:
                command = wandb_sync_command([os.path.join(run_dir, "wandb")], run_id, project, glob="/offline-run-*")
            print(
                f"W&B offline cannot reopen run {run_id}: this resume is written as a new offline segment with the same id. "
                f"Upload all segments in order into one run with `{command}`."
            )
        return {}
    if rewind and log_step is not None:
        k = first_wandb_row_after(project, run_id, log_step)
        if k is not None:
            return {"resume": None, "resume_from": f"{run_id}?_step={k}"}
    return {"resume": "must"}


def first_wandb_row_after(project: str, run_id: str, log_step: int, timeout_s: float = 20.0) -> int | None:
    """``_step`` of the online run's first history row with ``trainer/global_step > log_step``.

    ``None`` if there is none (nothing to rewind) or the W&B API fails (no network, no run).
    """
    try:
        import wandb

        api = wandb.Api(timeout=int(timeout_s))
        run = api.run(f"{api.default_entity}/{project}/{run_id}")
        for row in run.scan_history(keys=["_step", "trainer/global_step"]):
            if row["trainer/global_step"] > log_step:
                return int(row["_step"])
    except Exception as err:  # noqa: BLE001 - any API failure means "resume without rewind"
        print(
            f"lightning-gen: W&B rewind point unknown ({type(err).__name__}); resuming run {run_id} with resume='must'."
        )
    return None
