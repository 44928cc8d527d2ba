"""Helpers that ``lightning_gen`` and ``datamodules`` share, defined once: errors, ranks, atomic writes, progress.

A package of its own because ``datamodules`` stands alone (it imports nothing of ``lightning_gen``)
and both need these. Nothing here imports Lightning or torch at import time.
"""
