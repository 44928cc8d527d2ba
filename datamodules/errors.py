"""Data errors are user errors: they print as one paragraph that names the fix."""
from lightning_gen.errors import ConfigError, LightningGenError

__all__ = ["ConfigError", "DataNotFoundError"]


class DataNotFoundError(LightningGenError, FileNotFoundError):
    """A dataset is not where any configured source looks for it."""
