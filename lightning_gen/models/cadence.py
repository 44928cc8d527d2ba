"""When a training step's metrics reach the loggers, so models call ``self.log`` only then.

Each ``self.log`` costs about a millisecond of Lightning bookkeeping on CPU (2-10 % of a small
model's step), and on-step training metrics are written only every ``log_every_n_steps`` anyway.
"""

from __future__ import annotations

import lightning as L


def is_logging_step(trainer: L.Trainer, steps_done: int) -> bool:
    """True when the loggers write this step (Lightning's cadence), on the last batch, or the final step.

    ``steps_done``: optimizer steps completed once this training step ends (``global_step + 1``
    before the step's optimizer call, ``global_step`` after it).
    """
    connector = getattr(trainer, "_logger_connector", None)
    if connector is None or connector.should_update_logs or trainer.is_last_batch:
        return True
    return trainer.max_steps > 0 and steps_done >= trainer.max_steps
