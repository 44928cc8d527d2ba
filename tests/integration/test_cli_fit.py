"""``lightning-gen fit`` on real MNIST end to end (in this process): checkpoint, CSV, sample grids, the offline W&B
run, and a console that holds what a user needs (no Lightning advert, FLOPs table or deprecation warning)."""

import contextlib
import logging
import warnings
from collections.abc import Iterator

from lightning_gen.cli.trainer import QUIET_LIGHTNING_LINES
from lightning_gen.loggers.wandb import read_offline_history
from tests.helpers.cli import run_main
from tests.helpers.paths import EXPERIMENTS


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def lightning_console() -> Iterator[tuple[list[str], list[warnings.WarningMessage]]]:
    """What Lightning would print in a process of its own: the records that reach its loggers' handlers (the
    in-process run's stderr does not hold them) and every warning shown (none is hidden by pytest's filters)."""
    handler = _Records()
    loggers = [logging.getLogger("lightning.pytorch"), logging.getLogger("lightning.fabric")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            yield handler.lines, shown
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def test_cli_trains_on_real_mnist_and_leaves_checkpoint_csv_and_offline_wandb(tmp_path):
    args = [
        "fit",
        "--config",
        str(EXPERIMENTS / "vae_mnist.yaml"),
        "--config",
        str(EXPERIMENTS / "debug.yaml"),
        "--trainer.limit_train_batches=6",
        "--trainer.limit_val_batches=2",
        "--trainer.log_every_n_steps=2",
        "--data.init_args.batch_size=16",  # what is checked is the records, not the batch (128 costs ~5 s more)
        "--run.root=runs",
        "--run.id=e2e",
    ]
    with lightning_console() as (records, shown):
        result = run_main(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_console_is_for_users(result.stdout + result.stderr, records, shown)
    run_dir = tmp_path / "runs" / "vae_mnist" / "e2e"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert "run:" in (run_dir / "config.yaml").read_text() and "id: e2e" in (run_dir / "config.yaml").read_text()
    header, *rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert {"train/loss", "train/recon", "train/kl", "val/elbo"} <= set(header.split(","))
    assert len(rows) >= 3
    assert (run_dir / "samples").is_dir() and any((run_dir / "samples").glob("samples_step*.png"))
    offline_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1
    history = read_offline_history(offline_runs[0])
    logged = {key for row in history for key in row}
    assert {"train/loss", "train/kl", "val/elbo", "samples._type", "reconstructions._type"} <= logged
    assert list((offline_runs[0] / "files" / "media" / "images").glob("samples_*.png"))
    assert "wandb sync" in result.stdout + result.stderr


def _assert_console_is_for_users(console: str, records: list[str], shown: list[warnings.WarningMessage]) -> None:
    """The model in one line of parameters; no advert, absent hardware, seed line, FLOPs column or pytree warning."""
    assert "model: VAE - net ConvVAE 1.5 M; 1.5 M trainable, 1.5 M parameters in all (6.1 MB)" in console
    assert "`Trainer.fit` stopped: `max_epochs=1` reached." in records  # Lightning's own lines still arrive
    assert not [line for line in records if line.startswith(QUIET_LIGHTNING_LINES)], records
    assert not [line for line in [console, *records] if "FLOPs" in line or "litlogger" in line]
    assert "Seed set to" not in console and "GPU available" not in console
    pytree = [w for w in shown if "lightning/pytorch/utilities/_pytree.py" in w.filename]
    assert not pytree, [str(w.message) for w in pytree]
    assert not [w for w in shown if "Experiment logs directory" in str(w.message)]
