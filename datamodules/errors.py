"""Data errors are user errors: each prints as one paragraph that names the fix.

``datamodules`` stands alone (it imports nothing of ``lightning_gen``); ``lightning_gen.errors``
builds its own errors on :class:`UserError`, so one ``except UserError`` catches both.
"""
from __future__ import annotations

__all__ = ["ConfigError", "CorruptDataError", "DataNotFoundError", "UserError"]


class UserError(Exception):
    """Bad input, not a bug: the message is one paragraph saying what is wrong and how to fix it.

    A DataLoader worker re-raises its exception in the main process as ``type(err)(text)``, the
    text being "Caught ... in DataLoader worker process N" plus the worker's traceback; the
    constructor keeps only the original paragraph, so the user still reads one paragraph.
    """

    def __init__(self, message: str = "", *args: object) -> None:
        super().__init__(_strip_worker_traceback(type(self), message), *args)


def _strip_worker_traceback(cls: type, message: str) -> str:
    if not (isinstance(message, str) and message.startswith("Caught ") and "Traceback" in message):
        return message
    marker = f"{cls.__module__}.{cls.__qualname__}: "
    at = message.rfind(marker)
    return message[at + len(marker) :].strip() if at >= 0 else message


class ConfigError(UserError, ValueError):
    """A configuration value is invalid; the message names the key and the values allowed."""


class DataNotFoundError(UserError, FileNotFoundError):
    """A dataset is not where any configured source looks for it."""


class CorruptDataError(UserError, ValueError):
    """A data file exists but cannot be read as what it claims to be (a broken image, a binary "text")."""
