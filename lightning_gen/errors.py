"""The one exception type users see: a paragraph that says what is wrong and how to fix it."""
from __future__ import annotations


class LightningGenError(Exception):
    """A user-facing error. The CLI prints its message alone (no traceback) and exits with 1.

    Also subclasses nothing else on purpose: catch it to tell bad input from bugs.
    """


class ConfigError(LightningGenError, ValueError):
    """A configuration value is invalid; the message names the key and the values allowed."""
