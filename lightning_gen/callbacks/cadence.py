"""When a sampling/evaluation callback runs: ``every_n_epochs`` and ``every_n_steps``, one meaning for all.

``SampleGrid``, the image metric callbacks (FID, KID, ...) and ``TextMetrics`` take both arguments
and read them through :class:`Cadence`:

* ``every_n_epochs: n`` — at the end of every n-th validation epoch of ``fit`` (epochs counted
  from 1; the sanity check never counts). A stand-alone ``validate`` run evaluates once.
* ``every_n_steps: n`` — after every n-th optimizer step (``global_step`` n, 2n, ...).
* ``null`` (``None``) means **never**; it is the only way to say it. ``0`` and negative values are
  refused with a :class:`~gen_common.errors.ConfigError`, so "never" cannot be written two ways.

Both may be set (the callback then runs at both moments, at most once per moment).
(The *logging* cadence of training metrics is :mod:`lightning_gen.models.cadence`.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lightning as L

from gen_common.errors import ConfigError


@dataclass
class Cadence:
    """``every_n_epochs`` / ``every_n_steps`` of a callback (``None``: never), validated on creation.

    Args:
        every_n_epochs: Run after every n-th validation epoch of ``fit``; ``None``: never then.
        every_n_steps: Run after every n-th optimizer step; ``None``: never then.
        owner: The callback's name, for error messages.
    """

    every_n_epochs: int | None
    every_n_steps: int | None
    owner: str = "callback"
    _last_step: int = field(default=-1, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, value in (("every_n_epochs", self.every_n_epochs), ("every_n_steps", self.every_n_steps)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(
                    f"{self.owner}: `{name}` must be a whole number >= 1, or null for never; got {value!r}. "
                    f"Fix: set `{name}: null` to switch it off (0 is not accepted), or a positive count."
                )
        if self.every_n_epochs is None and self.every_n_steps is None:
            raise ConfigError(
                f"{self.owner}: `every_n_epochs` and `every_n_steps` are both null, so it would never run. "
                "Fix: set one of them (e.g. `every_n_epochs: 1`), or remove the callback from `trainer.callbacks`."
            )

    def at_validation_end(self, trainer: L.Trainer) -> bool:
        """True at this validation epoch's end (call from ``on_validation_epoch_end``)."""
        if self.every_n_epochs is None or trainer.sanity_checking:
            return False
        if trainer.state.fn != "fit":
            return True  # a stand-alone validate run: once
        return (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def at_train_batch_end(self, trainer: L.Trainer) -> bool:
        """True after this optimizer step (call from ``on_train_batch_end``; ``global_step`` already counts it).

        Once per step: with gradient accumulation the batches between two steps do not run it again.
        """
        step = trainer.global_step
        if self.every_n_steps is None or step == 0 or step % self.every_n_steps != 0 or step == self._last_step:
            return False
        self._last_step = step
        return True
