"""On-disk caches of evaluation artefacts: atomic writes, content keys, the user cache folder.

Real-image features are computed once per *protocol* and reused: the key hashes everything that
changes them (dataset identity and split, number of images, resize protocol, extractor and its
weights checksum, library versions). A file appears only complete (temp file + ``os.replace``),
so an interrupted write never leaves a partial entry behind.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from gen_common.atomic import atomic_write
from lightning_gen.runs import env


def default_cache_dir() -> Path:
    """``$LIGHTNING_GEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/lightning_gen``, else ``~/.cache/lightning_gen``."""
    if os.environ.get(env.CACHE_DIR):
        return Path(os.environ[env.CACHE_DIR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lightning_gen"


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temp file in the same folder, fsync, then rename over ``path``."""
    with atomic_write(path) as f:
        torch.save(obj, f)


def library_versions() -> dict[str, str]:
    """Versions that can change extracted features (part of every cache key and protocol card)."""
    import torch_fidelity

    return {"torch": torch.__version__.split("+")[0], "torch_fidelity": torch_fidelity.__version__}


def cache_key(parts: dict[str, Any]) -> str:
    """A short stable hash of a JSON-able description."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


class FeatureCache:
    """A folder of ``<kind>-<key>.pt`` entries, each a dict of tensors plus its own description.

    Args:
        root: Cache folder (default ``<user cache>/real_features``).
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir() / "real_features"
        self.hits = 0
        self.misses = 0

    def path(self, parts: dict[str, Any], kind: str = "real") -> Path:
        return self.root / f"{kind}-{cache_key(parts)}.pt"

    def load(self, parts: dict[str, Any], kind: str = "real") -> dict[str, Any] | None:
        """The stored entry, or ``None``; an entry whose description differs is treated as a miss."""
        path = self.path(parts, kind)
        if not path.is_file():
            self.misses += 1
            return None
        try:  # tensors and plain containers only: a cache file can never run code
            entry = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - unreadable or older format: recompute and overwrite
            self.misses += 1
            return None
        if json.loads(json.dumps(entry.get("key_parts"), default=str)) != json.loads(json.dumps(parts, default=str)):
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def store(self, parts: dict[str, Any], payload: dict[str, Any], kind: str = "real") -> Path:
        path = self.path(parts, kind)
        atomic_torch_save({"key_parts": parts, **payload}, path)
        return path
