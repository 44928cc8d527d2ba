"""Parse a tool command's options into its dataclass with jsonargparse: the dataclass is the one source.

Each tool command (``evaluate``, ``sample``, ``export``, ``compare``, ``sweep``) declares a
dataclass whose fields are its flags (types, defaults, and help from the docstring's ``Args:``).
jsonargparse checks the types (``Literal`` choices, ``int | None`` ...). Two shell spellings
jsonargparse lacks are kept: space-separated lists (``--metrics fid kid pr``, also written
``--metrics [fid,kid,pr]``) and bare booleans (``--compare_torch_fidelity`` means ``true``;
``--no_NAME`` means ``--NAME false``).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def _kind(hint: Any) -> str:
    """``"list"``, ``"bool"`` or ``"value"``: how a field's flag takes its tokens."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if hint is bool or args == [bool]:
        return "bool"
    if typing.get_origin(hint) in (list, tuple) or any(typing.get_origin(a) in (list, tuple) for a in args):
        return "list"
    return "value"


def normalize_argv(
    cls: type, argv: Sequence[str], positional: str | None = None, aliases: Mapping[str, str] | None = None
) -> list[str]:
    """Rewrite shell spellings into jsonargparse's: lists as JSON, bare booleans, ``--no_X``, aliases.

    Leading tokens that are not flags become field ``positional`` (a list, or one value).
    """
    hints = typing.get_type_hints(cls)
    kinds = {f.name: _kind(hints[f.name]) for f in dataclasses.fields(cls)}
    aliases = dict(aliases or {})
    out: list[str] = []
    tokens = list(argv)
    leading: list[str] = []
    while tokens and not tokens[0].startswith("-") and positional is not None:
        leading.append(tokens.pop(0))
    if leading and kinds[positional] == "list":
        out += [f"--{positional}", json.dumps(leading)]
    elif leading:
        out += [f"--{positional}", leading[0], *leading[1:]]  # extra values: jsonargparse names them
    while tokens:
        token = tokens.pop(0)
        if not token.startswith("--") or token in ("--help", "-h"):
            out.append(token)
            continue
        flag, eq, inline = token.partition("=")
        name = aliases.get(flag, flag)[2:]
        negated = name.startswith("no_") and kinds.get(name[3:]) == "bool"
        if negated:
            out += [f"--{name[3:]}", "false"]
            continue
        kind = kinds.get(name)
        if eq or kind not in ("list", "bool"):
            out.append(f"--{name}" + (f"={inline}" if eq else ""))
            continue
        values = []
        while tokens and not tokens[0].startswith("--"):
            values.append(tokens.pop(0))
            if kind == "bool":
                break
        if kind == "bool":
            out += [f"--{name}", values[0] if values else "true"]
        elif len(values) == 1 and values[0].startswith("["):
            out += [f"--{name}", values[0]]  # already a JSON/YAML list
        else:
            out += [f"--{name}", json.dumps(values)]
    return out


def parse_options(
    cls: type[T],
    argv: Sequence[str],
    prog: str,
    positional: str | None = None,
    aliases: Mapping[str, str] | None = None,
    epilog: str | None = None,
) -> T:
    """``argv`` -> an instance of dataclass ``cls`` (``--help`` prints the fields' help and exits)."""
    from jsonargparse import ArgumentParser

    doc = (cls.__doc__ or "").strip().split("\n\n")[0]
    parser = ArgumentParser(prog=prog, description=doc, epilog=epilog, default_env=False)
    parser.add_class_arguments(cls, as_group=False)
    cfg = parser.parse_args(normalize_argv(cls, argv, positional, aliases))
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in cfg.as_dict().items() if k in names})
