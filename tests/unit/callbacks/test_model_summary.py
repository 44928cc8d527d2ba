"""fit's model summary: one line of parameter counts (Lightning's table has a FLOPs column of zeros)."""

from __future__ import annotations

import lightning as L
import pytest
from lightning.pytorch.demos.boring_classes import BoringModel
from torch import nn

from lightning_gen.callbacks.model_summary import ParameterSummary


class _TwoNets(BoringModel):
    def __init__(self) -> None:
        super().__init__()
        self.frozen = nn.Linear(10, 5)
        self.frozen.requires_grad_(False)
        self.counter = nn.Identity()  # no parameters: not listed


def test_one_line_names_each_network_and_the_counts(
    tmp_path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    summary = ParameterSummary()
    trainer = L.Trainer(
        max_steps=1,
        limit_val_batches=0,
        callbacks=[summary],
        enable_model_summary=False,  # as the run plan sets it: no table of Lightning's own
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(_TwoNets())
    line = "model: _TwoNets - layer Linear 66, frozen Linear 55; 66 trainable, 121 parameters in all (0.0 MB)"
    assert summary.line == line
    out = capsys.readouterr()
    assert line in out.out and "FLOPs" not in out.out + out.err and "┃" not in out.out + out.err
