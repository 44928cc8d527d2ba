"""The ``run:`` section of a config (:class:`RunOptions`): where a run writes, its loggers, its safety nets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gen_common.errors import ConfigError


@dataclass
class RunOptions:
    """The ``run:`` section of a config: run directory and default loggers.

    Args:
        root: Folder that holds all runs.
        name: Experiment name; default: the stem of the first ``--config`` file.
        id: Run id (directory name and W&B run id); default: a new ``YYYYmmdd-HHMMSS-xxxx``.
        wandb: ``auto`` (online with an API key and network, else offline), ``online``,
            ``offline`` or ``disabled``.
        project: W&B project.
        group: W&B group (default: the experiment name).
        tags: W&B tags.
        tensorboard: Also log to TensorBoard in ``<run dir>/tensorboard``.
        checkpoint_every_n_steps: Also refresh ``checkpoints/last.ckpt`` every this many
            optimizer steps (0: only at epoch ends), so a killed run loses at most that many steps.
        checkpoint_every_min: Also refresh ``checkpoints/last.ckpt`` after this many minutes of training
            (rank 0's clock decides for every rank), so a run killed without warning (a lost node, an OOM kill)
            loses at most that; 0: off.
        lock_wait_s: When another live process holds the run dir (``<run dir>/.lock``), wait this
            many seconds for it to finish before giving up (a retried sweep trial waits for its
            killed predecessor to save); 0: fail at once.
        wandb_rewind: On an online resume, rewind the W&B run (``resume_from``) to its first row
            logged after the checkpoint, so those rows are replaced; off: ``resume="must"``.
        progress: ``auto`` (a rich bar in an interactive terminal, none in CI/pipes), ``rich`` or ``none``.
        progress_refresh_steps: Redraw the bar every this many batches (the bar costs CPU time).
        collective_timeout_min: Under DDP, a rank waiting this many minutes in a collective (a peer
            stuck or gone) fails instead of hanging; longer than any work one rank does alone.
        stop_grace_s: The grace period after SIGTERM/SIGUSR1/Ctrl-C (set it to the scheduler's: SLURM
            ``KillWait`` or the ``--signal=USR1@<s>`` lead, Kubernetes ``terminationGracePeriodSeconds``).
            The run saves ``last.ckpt`` at the next batch end, validates those weights and draws their
            sample grid if that fits in what is left (less a margin for stopping; else one line says it was
            skipped), and exits; a process still alive this many seconds after the signal (stuck in C code,
            e.g. a collective) is ended with status 128 + signal. 0: never. Longer than a batch + a save.
    """

    root: str = "runs"
    name: str | None = None
    id: str | None = None
    wandb: Literal["auto", "online", "offline", "disabled"] = "auto"
    project: str = "lightning_gen"
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    tensorboard: bool = False
    checkpoint_every_n_steps: int = 0
    checkpoint_every_min: float = 15.0
    lock_wait_s: float = 0.0
    wandb_rewind: bool = True
    progress: Literal["auto", "rich", "none"] = "auto"
    progress_refresh_steps: int = 10
    collective_timeout_min: float = 10.0
    stop_grace_s: float = 60.0

    def __post_init__(self) -> None:
        if self.checkpoint_every_n_steps < 0:
            raise ConfigError(f"`--run.checkpoint_every_n_steps` must be >= 0, got {self.checkpoint_every_n_steps}.")
        if self.checkpoint_every_min < 0:
            raise ConfigError(f"`--run.checkpoint_every_min` must be >= 0 (0: off), got {self.checkpoint_every_min}.")
        if self.lock_wait_s < 0:
            raise ConfigError(f"`--run.lock_wait_s` must be >= 0, got {self.lock_wait_s}.")
        if self.progress_refresh_steps < 1:
            raise ConfigError(f"`--run.progress_refresh_steps` must be >= 1, got {self.progress_refresh_steps}.")
