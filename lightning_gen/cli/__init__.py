"""The Trainer commands' CLI: :mod:`~lightning_gen.cli.trainer` (LightningCLI) and the model/data check it runs first."""
