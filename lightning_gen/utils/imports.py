"""Import an object (class, function) by its dotted path, with one clear error."""

from __future__ import annotations

import importlib
from typing import Any

from gen_common.errors import ConfigError


def import_object(path: str, what: str = "object") -> Any:
    """``pkg.module.Name`` -> the object; a bad path raises :class:`ConfigError` naming it."""
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(
            f"Cannot import {what} {path!r} ({err}); give a full dotted path such as lightning_gen.models.VAE."
        ) from None
