"""The one private LightningCLI method we override, pinned: a Lightning release that renames or stops
calling it fails here, not silently in users' resumes (see ``LightningGenCLI._parse_ckpt_path``)."""

from __future__ import annotations

import inspect

from lightning.pytorch.cli import LightningCLI

from lightning_gen.cli.trainer import LightningGenCLI


def test_lightning_cli_still_calls_parse_ckpt_path_between_parsing_and_instantiation() -> None:
    source = inspect.getsource(LightningCLI.__init__)
    assert "self._parse_ckpt_path()" in source
    assert source.index("self.parse_arguments(") < source.index("self._parse_ckpt_path()")
    assert LightningGenCLI._parse_ckpt_path is not LightningCLI._parse_ckpt_path


def test_the_cli_overrides_no_other_private_method() -> None:
    ours = {name for name in vars(LightningGenCLI) if name.startswith("_") and not name.startswith("__")}
    private_of_lightning = {name for name in ours if hasattr(LightningCLI, name)}
    assert private_of_lightning == {"_parse_ckpt_path"}
