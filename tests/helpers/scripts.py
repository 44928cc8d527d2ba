"""The scripts under ``scripts/`` as modules (they are files, not a package)."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from tests.helpers.paths import REPO_ROOT


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py``, imported under the module name ``name``."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
