"""A config the parser refuses, as one paragraph: which file or key, why, and where the options are listed.

jsonargparse prints its whole usage (about 60 lines) before the error and names a YAML file
``"<unicode string>"``; for a ``class_path`` with a wrong key it lists every Union branch it tried,
the last one ("Expected a <class 'NoneType'>") being the one a reader sees.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from pathlib import Path

import yaml

from lightning_gen.utils.imports import import_object

_CLASS_PROBLEM = re.compile(r"Problem with given class_path '([\w.]+)':\s*\n\s*(.+)")
_KEY = re.compile(r'Parser key "([\w.]+)"')


def config_files(argv: Sequence[str]) -> list[str]:
    """The ``--config`` files named on the command line, in order."""
    files, tokens = [], list(argv)
    for i, token in enumerate(tokens):
        if token == "--config" and i + 1 < len(tokens):
            files.append(tokens[i + 1])
        elif token.startswith("--config="):
            files.append(token.split("=", 1)[1])
    return files


def _yaml_problem(argv: Sequence[str]) -> str | None:
    for name in config_files(argv):
        try:
            yaml.safe_load(Path(name).read_text())
        except OSError:
            continue
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            return f"{name} is not valid YAML: {problem}{at}. Fix that line (YAML indents with spaces, never tabs)."
    return None


def _accepted(class_path: str) -> str:
    try:
        cls = import_object(class_path, "class")
    except Exception:  # noqa: BLE001 - the names are a hint only
        return ""
    names = [n for n in inspect.signature(cls.__init__).parameters if n not in ("self", "args", "kwargs")]
    return f" ({cls.__name__} takes: {', '.join(names)})" if names else ""


def parse_error_paragraph(message: str, argv: Sequence[str], subcommand: str) -> str:
    """One paragraph for a parse error ``message`` of ``lightning-gen SUBCOMMAND ARGV``."""
    help_hint = f"`lightning-gen {subcommand} --help` lists the options."
    if "Problems parsing config" in message or "<unicode string>" in message:
        found = _yaml_problem(argv)
        if found:
            return f"{found} Nothing was written."
    problem = _CLASS_PROBLEM.search(message)
    key = _KEY.search(message)
    if problem:
        class_path, reason = problem.group(1), problem.group(2).strip()
        where = f"`{key.group(1)}` ({class_path})" if key else class_path
        return f"{where}: {reason}{_accepted(class_path)}. Nothing was written. {help_hint}"
    first = " ".join(line.strip() for line in message.strip().splitlines()[:3])
    return f"{first}. Nothing was written. {help_hint}"
