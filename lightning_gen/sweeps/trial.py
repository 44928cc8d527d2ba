"""One trial's command: the sweep's ``command`` with its values filled, dry-run before a sweep starts."""

from __future__ import annotations

import ctypes
import difflib
import inspect
import json
import shlex
import signal
import subprocess
import sys
from typing import Any

import yaml

from gen_common.errors import ConfigError
from lightning_gen.sweeps.spec import SweepSpec
from lightning_gen.utils.imports import import_object


def trial_command(spec: SweepSpec, values: dict[str, Any], extra: list[str]) -> list[str]:
    """The sweep's ``command`` with W&B's macros filled: ``${args}`` -> ``--key=value`` ..."""
    args = [f"--{k}={json.dumps(v) if isinstance(v, (list, dict, bool)) else v}" for k, v in values.items()]
    out: list[str] = []
    for part in spec.command:
        if part == "${args}":
            out += args + extra
        elif part == "${args_no_hyphens}":
            out += [a[2:] for a in args] + extra
        elif part == "${env}":
            continue
        elif part == "${interpreter}":
            out.append(sys.executable)
        elif part == "${program}":
            out.append(str(spec.raw.get("program", "lightning-gen")))
        else:
            out.append(str(part))
    if out and out[0] == "lightning-gen":  # this interpreter's CLI, whatever PATH says
        out[:1] = [sys.executable, "-m", "lightning_gen"]
    return out


def die_with_parent() -> None:
    """In the trial process: get SIGTERM (-> checkpoint, clean exit) if the sweep process dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def check_command(spec: SweepSpec, values: dict[str, Any], extra: list[str], timeout_s: float = 300.0) -> None:
    """Dry-run the CLI on one trial's arguments (``--print_config``): a bad key fails before any trial.

    The command without the sweep's values is dry-run beside it, at the same time, so that a refusal can
    name the sweep key at fault (:func:`unknown_key`) without a second start-up after the first.
    """
    cmd = trial_command(spec, values, extra)
    with_values = _start([*cmd, "--print_config"])
    without_values = _start([*trial_command(spec, {}, extra), "--print_config"])
    try:
        _, err = with_values.communicate(timeout=timeout_s)
        if with_values.returncode == 0:
            return
        unknown = _unknown_parameter(spec, values, without_values, timeout_s)
        if unknown:
            raise ConfigError(f"{unknown} Fix the key in the sweep file. Nothing was run.")
        tail = " ".join(err.strip().splitlines()[-3:])
        raise ConfigError(
            f"Sweep {spec.name}: the trial command is rejected by the CLI: {tail} (command: {shlex.join(cmd)}). Nothing was run."
        )
    finally:
        for proc in (with_values, without_values):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _unknown_parameter(
    spec: SweepSpec, values: dict[str, Any], without_values: subprocess.Popen, timeout_s: float
) -> str | None:
    """The first sweep key that names no option of the trial command, said plainly; ``None`` if none can be told.

    jsonargparse reports a bad key under a ``class_path`` as its last Union branch ("Expected a <class
    'NoneType'>"); instead the command's config without the sweep's values (``without_values``, a running
    ``--print_config``) is read and every key is walked through it, a key under a ``class_path`` checked
    against that class's signature.
    """
    try:
        out, _ = without_values.communicate(timeout=timeout_s)
        config = yaml.safe_load(out) if without_values.returncode == 0 else None
    except (subprocess.SubprocessError, OSError, yaml.YAMLError):
        return None
    if not isinstance(config, dict):
        return None
    for key in spec.parameters:
        reason = unknown_key(key, config, values)
        if reason:
            return f"Sweep {spec.name}: the trial command is rejected by the CLI: sweep parameter `{key}`: {reason}"
    return None


def unknown_key(key: str, config: dict[str, Any], values: dict[str, Any]) -> str | None:
    """Why dotted ``key`` names nothing in the resolved ``config`` (``--print_config``), or ``None``.

    Under a ``class_path`` the next name (after ``init_args``) must be a parameter of that class, the one the
    sweep's own ``<prefix>.class_path`` value picks if it has one; elsewhere it must be a key of the mapping.
    ``None`` also where it cannot be told: below a null, a list or a class that takes ``**kwargs``.
    """
    parts, node, i = key.split("."), config, 0
    while i < len(parts) and isinstance(node, dict):
        where = ".".join(parts[:i])
        if "class_path" not in node:
            if parts[i] not in node:
                return _not_one_of(parts[i], f"a key of `{where}`" if where else "a top-level key", list(node))
            node, i = node[parts[i]], i + 1
            continue
        j = i + 1 if parts[i] == "init_args" else i
        if parts[i] in ("class_path", "dict_kwargs") or j >= len(parts):
            return None
        class_path = str(values.get(f"{where}.class_path", node["class_path"]))
        printed = node.get("init_args") if class_path == node["class_path"] else None
        names = _init_parameters(class_path, printed if isinstance(printed, dict) else None)
        if names is not None and parts[j] not in names:
            return _not_one_of(parts[j], f"a parameter of {class_path}", names)
        node, i = (printed or {}).get(parts[j]) if isinstance(printed, dict) else None, j + 1
    return None


def _init_parameters(class_path: str, printed: dict[str, Any] | None) -> list[str] | None:
    """The parameters the CLI sets on ``class_path``: its signature's, those printed first (an optimizer's
    ``params`` are the model's to give); ``None`` if it does not import or takes ``**kwargs`` with none printed."""
    try:
        params = inspect.signature(import_object(class_path, "class")).parameters.values()
    except (ConfigError, TypeError, ValueError):
        return None
    names = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if printed is None:
        return None if any(p.kind == p.VAR_KEYWORD for p in params) else names
    return [n for n in names if n in printed] + [n for n in printed if n not in names]


def _not_one_of(name: str, what: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean `{close[0]}`?" if close else ""
    return f"`{name}` is not {what} (it takes: {', '.join(names)}).{hint}"
