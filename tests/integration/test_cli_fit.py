"""``lightning-gen fit`` on real MNIST end to end (in this process): checkpoint, CSV, sample grids, the offline W&B run."""

from lightning_gen.loggers.wandb import read_offline_history
from tests.helpers.cli import run_main
from tests.helpers.paths import EXPERIMENTS


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
    result = run_main(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
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
