"""The entry point (``lightning_gen.__main__``): ``--help`` and the tool helps leave Lightning unloaded; no command is usage."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lightning_gen.__main__ import main
from tests.helpers.paths import REPO_ROOT as REPO


def test_help_and_tool_help_do_not_import_lightning() -> None:
    """``lightning-gen --help`` and every ``<tool> --help`` (and a whole `compare`) leave Lightning unloaded."""
    code = """
import sys
from lightning_gen.__main__ import main
for argv in (["--help"], *([c, "--help"] for c in ("evaluate", "sample", "export", "compare", "sweep"))):
    try:
        main(argv)
    except SystemExit as e:
        assert e.code in (0, None), (argv, e.code)
print("LIGHTNING" if "lightning" in sys.modules else "LIGHT")
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("LIGHT")
    for command in ("fit", "evaluate", "sample", "export", "compare", "sweep", "--num_samples", "--ckpt", "--no_check"):
        assert command in out.stdout


def test_no_command_prints_usage_and_exits_2(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2 and "Tool commands" in capsys.readouterr().err
