"""The exceptions users see: bad input, not bugs, each a paragraph that names the fix.

One hierarchy for ``datamodules`` and ``lightning_gen`` alike, so ``lightning-gen`` prints any
:class:`UserError` as its message alone (no traceback) and exits with status 1.
"""

from __future__ import annotations

__all__ = ["ConfigError", "CorruptDataError", "DataNotFoundError", "LightningGenError", "UserError", "user_error_in"]


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


class LightningGenError(UserError):
    """A user-facing error raised by ``lightning_gen`` (a refused resume, a full disk, a run dir in use)."""


class ConfigError(LightningGenError, ValueError):
    """A configuration value is invalid; the message names the key and the values allowed."""


class DataNotFoundError(UserError, FileNotFoundError):
    """A dataset is not where any configured source looks for it."""


class CorruptDataError(UserError, ValueError):
    """A data file exists but cannot be read as what it claims to be (a broken image, a binary "text")."""


def user_error_in(err: BaseException | None) -> UserError | None:
    """The user error behind ``err``, if any: jsonargparse re-raises a constructor's
    :class:`ConfigError` as a ``ValueError`` listing every Union member it tried; the cause is kept."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, UserError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None
