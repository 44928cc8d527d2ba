"""Feature extractors: float ``[0, 1]`` images in, float32 features out, protocol described.

Every extractor is a torch-fidelity ``FeatureExtractorBase`` (Inception, or the small dataset
classifier of :mod:`lightning_gen.metrics.classifier`) behind one wrapper that fixes the input
protocol: images are quantised to uint8 exactly as torch-fidelity expects (``round(x * 255)``),
grey images are repeated to RGB for Inception, and the extractor runs under ``inference_mode``.

Speed without changing the numbers (fp32, the default): Inception's weights and activations are
``channels_last`` (oneDNN's native layout on CPU: no reorder per convolution), and each of its 94
batch norms is folded into the convolution before it (``torch.nn.utils.fusion.fuse_conv_bn_eval``:
one pass over each activation instead of two, ~14 % less CPU time per image). Features differ
from torch-fidelity's run by float32 rounding only (max |delta| ~2e-5), FID by < 1e-5 relative
(``scripts/bench_fid.py``, ``scripts/bench_evaluate_folders.py``). torch-fidelity's own ``forward``
still runs, so its protocol resize (TF1.x bilinear to 299x299 on the uint8 values) is applied
exactly as torch-fidelity applies it.

``precision="bf16"`` (opt-in, never the default) runs the extractor under bf16 autocast (CPU or
GPU): faster on hardware with bf16 units, but the features, hence FID, change; the deviation
measured here is written on every protocol card (:data:`BF16_FID_DEVIATION`).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

# How torch-fidelity's Inception resizes: TF1.x-compatible bilinear to 299x299, (x - 128) / 128.
INCEPTION_RESIZE = "torch-fidelity tf1x-bilinear 299x299, uint8 round(x*255), grey->RGB"
Precision = Literal["fp32", "bf16"]
PRECISIONS = ("fp32", "bf16")
# Measured with scripts/bench_fid.py (same images, fp32 vs bf16 autocast, converted weights, CPU).
BF16_FID_DEVIATION = (
    "FID relative deviation from fp32 measured 2.5e-4 (424.115 vs 424.221; 16 generated vs 16 real MNIST images, "
    "scripts/bench_fid.py --n 32, CPU); pool3 features differ by up to 0.11: compare bf16 FIDs only with bf16 FIDs"
)


def to_uint8(images: Tensor) -> Tensor:
    """``[0, 1]`` floats -> uint8 ``round(x * 255)`` (uint8 input passes through)."""
    if images.dtype == torch.uint8:
        return images
    return images.detach().float().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)


class ImageFeatureExtractor:
    """A torch-fidelity feature extractor with a fixed input protocol and a description.

    Args:
        module: The torch-fidelity extractor (already loaded, eval mode).
        name: Its registry name, e.g. ``inception-v3-compat``.
        weights: What its weights are (``source``, ``sha256``...), for cache keys and protocol cards.
        resize: The resize/quantisation protocol, in words.
        rgb: Repeat single-channel images to 3 channels (Inception needs RGB).
        precision: ``fp32`` (default, the reference numbers) or ``bf16`` (autocast; changes the metric).
        channels_last: Run the module in ``channels_last`` layout (same numbers up to float32 rounding).
        folded: Description of the module's batch norms folded into its convolutions (``None``: not folded).
    """

    def __init__(
        self,
        module: FeatureExtractorBase,
        name: str,
        weights: dict[str, Any],
        resize: str,
        rgb: bool,
        precision: Precision = "fp32",
        channels_last: bool = False,
        folded: str | None = None,
    ) -> None:
        from gen_common.errors import ConfigError

        # jsonargparse checks this Literal in a config; the re-check stays while a test passes precision="fp16" directly
        if precision not in PRECISIONS:
            raise ConfigError(f"Feature extractor `precision` must be one of {PRECISIONS}, got {precision!r}.")
        self.module = module.to(memory_format=torch.channels_last) if channels_last else module
        self.name = name
        self.weights = dict(weights)
        self.resize = resize
        self.rgb = rgb
        self.precision = precision
        self.channels_last = channels_last
        self.folded = folded
        self.calls = 0  # images seen; tests count real-image work with it

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.module.get_requested_features_list())

    @property
    def device(self) -> torch.device:
        param = next(self.module.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    def to(self, device: torch.device | str) -> ImageFeatureExtractor:
        self.module.to(device)
        return self

    def describe(self) -> dict[str, Any]:
        """The extractor's part of a protocol card and of a cache key."""
        extra = {
            f"weights_{k}": v for k, v in self.weights.items() if k not in ("source", "sha256", "path", "has_logits")
        }
        return {
            "extractor": self.name,
            "weights_source": self.weights.get("source"),
            "weights_sha256": self.weights.get("sha256"),
            "resize": self.resize,
            "features_dtype": "float32",
            "autocast": "bf16" if self.precision == "bf16" else "off",
            **({"bf16_fid_deviation": BF16_FID_DEVIATION} if self.precision == "bf16" else {}),
            **({"batch_norm": self.folded} if self.folded else {}),
            **extra,
        }

    def __call__(self, images: Tensor) -> dict[str, Tensor]:
        """``(B, C, H, W)`` images in ``[0, 1]`` (or uint8) -> ``{feature name: (B, D) float32 on CPU}``."""
        x = to_uint8(images).to(self.device)
        if self.rgb and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        self.calls += x.shape[0]
        bf16 = self.precision == "bf16"
        with torch.inference_mode(), torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=bf16):
            out = self.module.convert_features_tuple_to_dict(tuple(self.module(x)))
        return {k: v.float().cpu().clone() for k, v in out.items()}  # clone: ordinary tensors, not inference ones


def build_inception_extractor(
    features: list[str] | tuple[str, ...] = ("2048",),
    weights: str = "auto",
    cache_dir: str | None = None,
    precision: Precision = "fp32",
) -> ImageFeatureExtractor:
    """torch-fidelity's Inception (``inception-v3-compat``) with resolved weights (see :mod:`.inception`), ``channels_last``.

    Asking for ``logits_unbiased``/``logits`` (the Inception Score) needs the official weights:
    with the converted offline file this raises a :class:`ConfigError` that says how to get them.
    """
    from torch_fidelity.utils import create_feature_extractor

    from gen_common.errors import ConfigError
    from lightning_gen.metrics.inception import OFFICIAL_FILENAME, official_weights_path, resolve_inception_weights

    info = resolve_inception_weights(weights, cache_dir)
    if not info.has_logits and any(f.startswith("logits") for f in features):
        raise ConfigError(
            "The Inception Score needs Inception's 1008-way logits, which only the official torch-fidelity weights have; "
            f"the offline weights in use ({info.source}) provide pool3 features only (FID/KID/precision-recall). Fix: put "
            f"{OFFICIAL_FILENAME} in {official_weights_path().parent} (downloaded once when online: `weights: official`) or "
            f"pass its path as `weights: /path/to/{OFFICIAL_FILENAME}`; or drop the InceptionScore metric "
            "(for small images, ClassifierIS needs no download)."
        )
    module = create_feature_extractor(
        "inception-v3-compat", list(features), cuda=False, feature_extractor_weights_path=info.path, verbose=False
    )
    return ImageFeatureExtractor(
        fold_batch_norms(module),
        "inception-v3-compat",
        info.describe(),
        INCEPTION_RESIZE,
        rgb=True,
        precision=precision,
        channels_last=True,
        folded=FOLDED_BATCH_NORMS,
    )


#: On protocol cards and in real-feature cache keys (the features differ from unfolded ones by rounding).
FOLDED_BATCH_NORMS = "folded into the convolutions (torch.nn.utils.fusion.fuse_conv_bn_eval)"


def fold_batch_norms(module: FeatureExtractorBase) -> FeatureExtractorBase:
    """Fold every ``conv -> bn`` block (torch-fidelity's ``BasicConv2d``) of an eval-mode Inception into one conv.

    ``BasicConv2d.forward`` stays ``relu(bn(conv(x)))``, with ``conv`` the folded convolution and ``bn`` an identity.
    """
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d

    for block in module.modules():
        if isinstance(block, BasicConv2d) and isinstance(block.bn, nn.BatchNorm2d):
            block.conv = fuse_conv_bn_eval(block.conv, block.bn)
            block.bn = nn.Identity()
    return module
