"""The exception type users see: a paragraph that says what is wrong and how to fix it.

Built on ``datamodules.errors.UserError`` (``datamodules`` must not import ``lightning_gen``), so
the CLI prints data errors and ours alike; ``ConfigError`` is also a ``datamodules`` one.
"""
from __future__ import annotations

from datamodules import errors as _data_errors
from datamodules.errors import UserError

__all__ = ["ConfigError", "LightningGenError", "UserError", "user_error_in"]


class LightningGenError(UserError):
    """A user-facing error. The CLI prints its message alone (no traceback) and exits with 1.

    Catch :class:`UserError` to tell any bad input (also the datamodules') from bugs.
    """


class ConfigError(LightningGenError, _data_errors.ConfigError):
    """A configuration value is invalid; the message names the key and the values allowed."""


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
