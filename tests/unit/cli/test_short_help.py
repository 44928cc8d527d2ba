"""``lightning-gen fit --help`` is one screen without Lightning; ``--help-all`` is LightningCLI's full help."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from lightning_gen.__main__ import main
from lightning_gen.runs.options import RunOptions


def test_fit_help_is_one_screen_of_what_users_set(capsys: pytest.CaptureFixture[str]) -> None:
    main(["fit", "--help"])
    out = capsys.readouterr().out
    assert len(out.splitlines()) <= 40 and "--help-all" in out and "--ckpt_path" in out
    assert all(f"--run.{f.name}  ({f.default!r})" in out for f in dataclasses.fields(RunOptions) if f.name != "tags")


def test_fit_help_imports_no_lightning() -> None:
    code = "import sys; from lightning_gen.__main__ import main; main(['fit', '--help']); print('lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.strip().endswith("False")


def test_help_all_is_lightning_clis_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help-all"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "--trainer.max_epochs" in out and len(out.splitlines()) > 200
