"""The exception type users see: a paragraph that says what is wrong and how to fix it.

Built on ``datamodules.errors.UserError`` (``datamodules`` must not import ``lightning_gen``), so
the CLI prints data errors and ours alike; ``ConfigError`` is also a ``datamodules`` one.
"""
from __future__ import annotations

from datamodules import errors as _data_errors
from datamodules.errors import UserError

__all__ = ["ConfigError", "LightningGenError", "UserError"]


class LightningGenError(UserError):
    """A user-facing error. The CLI prints its message alone (no traceback) and exits with 1.

    Catch :class:`UserError` to tell any bad input (also the datamodules') from bugs.
    """


class ConfigError(LightningGenError, _data_errors.ConfigError):
    """A configuration value is invalid; the message names the key and the values allowed."""
