"""Sweeps: one W&B-format sweep file, run by Optuna (one node or a shared storage) or by W&B agents.

``spec`` reads the file; ``trial`` builds and dry-runs a trial's ``lightning-gen fit`` command; each backend
(``optuna_backend``, ``wandb_backend``) runs trials as subprocesses; ``lightning_gen.commands.sweep`` wires them.
"""
