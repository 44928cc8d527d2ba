"""One meaning of every_n_epochs / every_n_steps for SampleGrid, the image metrics and TextMetrics."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from gen_common.errors import ConfigError
from lightning_gen.callbacks import SampleGrid
from lightning_gen.callbacks.cadence import Cadence
from lightning_gen.callbacks.image_metrics import FID
from lightning_gen.callbacks.text_metrics import TextMetrics


def trainer(epoch: int = 0, step: int = 0, fn: str = "fit", sanity: bool = False) -> SimpleNamespace:
    return SimpleNamespace(current_epoch=epoch, global_step=step, state=SimpleNamespace(fn=fn), sanity_checking=sanity)


def test_every_n_epochs_counts_validation_epochs_of_fit_from_one() -> None:
    cadence = Cadence(every_n_epochs=3, every_n_steps=None)
    assert [e for e in range(9) if cadence.at_validation_end(trainer(epoch=e))] == [2, 5, 8]  # epochs 3, 6, 9
    assert not cadence.at_validation_end(trainer(epoch=2, sanity=True))  # the sanity check never counts
    assert cadence.at_validation_end(trainer(epoch=0, fn="validate"))  # a stand-alone validate: once


def test_every_n_steps_fires_once_per_nth_step() -> None:
    cadence = Cadence(every_n_epochs=None, every_n_steps=2)
    fired = [s for s in (0, 1, 2, 2, 2, 3, 4, 5, 6) if cadence.at_train_batch_end(trainer(step=s))]
    assert fired == [2, 4, 6]  # step 0 never; repeated batch ends of one step (accumulation) once
    assert not cadence.at_validation_end(trainer(epoch=0))  # every_n_epochs None: never at validation


@pytest.mark.parametrize("make", [SampleGrid, FID, TextMetrics])
def test_null_is_the_only_never_and_both_null_is_refused(make) -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="null for never") as info:
            make(every_n_epochs=bad)
        assert "\n" not in str(info.value)  # one paragraph
    with pytest.raises(ConfigError, match="would never run"):
        make(every_n_epochs=None, every_n_steps=None)
    callback = make(every_n_epochs=None, every_n_steps=5)
    assert callback.cadence == Cadence(None, 5, type(callback).__name__)
