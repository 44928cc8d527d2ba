"""``datamodules`` stands alone: importing it (in a fresh interpreter) loads nothing of ``lightning_gen``."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers.paths import REPO_ROOT


def test_datamodules_do_not_import_lightning_gen() -> None:
    code = "import datamodules, datamodules.text, sys; assert not [m for m in sys.modules if m.startswith('lightning_gen')]"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
