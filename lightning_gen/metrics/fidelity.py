"""Metric families computed from features with torch-fidelity's own functions.

The one exception is FID's trace term when the real statistics carry ``sqrt_sigma`` (the cached
ones do): same eigenvalues from a symmetric solver, see :func:`frechet_distance`.

Each family says which extractor and which feature layer it needs, for generated and for real
images, and turns features into numbers. Statistics are float64. Names are what gets logged
(under a prefix such as ``eval/``); classifier-based ones are named so nobody takes them for FID.

==================  =========================  ====================================================
family              extractor / layer          logged keys
==================  =========================  ====================================================
``fid``             Inception pool3 ``2048``   ``fid``
``kid``             Inception pool3 ``2048``   ``kid_mean``, ``kid_std``
``pr``              Inception pool3 ``2048``   ``precision``, ``recall``, ``f_score``
``is``              Inception ``logits_unb.``  ``is_mean``, ``is_std`` (official weights only)
``fd_classifier``   classifier penultimate     ``fd_classifier``
``is_classifier``   classifier logits          ``is_classifier_mean``, ``is_classifier_std``
==================  =========================  ====================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

TORCH_FIDELITY_RNG_SEED = 2020  # torch-fidelity's default rng_seed (KID subsets, IS shuffling)


def fid_statistics(features: Tensor, with_sqrt: bool = False) -> dict[str, np.ndarray]:
    """``{"mu", "sigma"}`` in float64 (torch-fidelity's estimator on float64 features).

    ``with_sqrt`` adds ``sqrt_sigma``, the PSD square root of ``sigma`` (cached with real
    statistics so that each later FID needs one symmetric eigensolve, see :func:`frechet_distance`).
    """
    stats = fid_features_to_statistics(features.detach().cpu().double())
    if with_sqrt:
        eigenvalues, vectors = np.linalg.eigh(stats["sigma"])
        stats["sqrt_sigma"] = (vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ vectors.T
    return stats


def _numpy(stats: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in stats.items()}


def frechet_distance(
    stats_fake: dict[str, np.ndarray],
    stats_real: dict[str, np.ndarray],
    features_fake: Tensor | None = None,
    features_real: Tensor | None = None,
) -> float:
    """Fréchet distance between two Gaussians, as torch-fidelity defines it.

    The trace term ``tr sqrt(sigma_fake sigma_real)`` is the only costly part; torch-fidelity takes
    it from a general eigensolve of the ``d x d`` product (~10 s for 2048-d on a CPU core). Here the
    same eigenvalues come from the smallest matrix at hand (tests check each route against
    ``torch_fidelity.calculate_metrics``):

    * both feature sets, and one of them no larger than ``d``: with ``Xf``, ``Xr`` the centred
      features, ``sigma_fake sigma_real`` has the non-zero eigenvalues of ``C C^T``,
      ``C = Xf Xr^T / sqrt((nf - 1)(nr - 1))`` (``nf x nr``), so the trace is the sum of ``C``'s
      singular values;
    * ``sqrt_sigma`` of the real set (cached with large real sets): the symmetric ``S sigma_fake S``
      (``S = sqrt(sigma_real)``), or with ``features_fake`` and ``nf <= d`` the Gram matrix
      ``Y Y^T / (nf - 1)``, ``Y = Xf S``;
    * otherwise torch-fidelity's own function.
    """
    stats_fake, stats_real = _numpy(stats_fake), _numpy(stats_real)
    dim = stats_real["sigma"].shape[0]
    if features_fake is not None and features_real is not None and min(len(features_fake), len(features_real)) <= dim:
        x_fake, x_real = _centred(features_fake), _centred(features_real)
        cross = x_fake @ x_real.T / np.sqrt((len(x_fake) - 1) * (len(x_real) - 1))  # (nf, nr)
        tr_covmean = float(np.linalg.svd(cross, compute_uv=False).sum())
    elif "sqrt_sigma" in stats_real:
        root = stats_real["sqrt_sigma"]
        if features_fake is not None and len(features_fake) <= dim:
            y = _centred(features_fake) @ root  # (n, d)
            product = y @ y.T / (len(y) - 1)  # (n, n): same non-zero eigenvalues as S sigma_fake S
        else:
            product = root @ stats_fake["sigma"] @ root  # (d, d)
        eigenvalues = np.linalg.eigvalsh((product + product.T) / 2.0)
        tr_covmean = float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())
    else:
        return float(fid_statistics_to_metric(stats_fake, stats_real, verbose=False)["frechet_inception_distance"])
    diff = stats_fake["mu"] - stats_real["mu"]
    return float(diff.dot(diff) + np.trace(stats_fake["sigma"]) + np.trace(stats_real["sigma"]) - 2.0 * tr_covmean)


def _centred(features: Tensor) -> np.ndarray:
    """Features as float64 rows minus their mean (``np.cov``'s centring)."""
    x = features.detach().cpu().double().numpy()
    return x - x.mean(axis=0)


@dataclass
class MetricFamily:
    """Base: which features a family needs and how it turns them into numbers."""

    key: ClassVar[str]
    extractor_kind: ClassVar[str] = "inception"  # "inception" | "classifier"
    fake_layer: ClassVar[str] = "2048"
    real_layer: ClassVar[str | None] = "2048"

    def settings(self) -> dict[str, Any]:
        """Family-specific protocol entries (kernel, subsets...)."""
        return {}

    def compute(self, fake: dict[str, Tensor], real: dict[str, Any] | None) -> dict[str, float]:
        raise NotImplementedError


@dataclass
class FIDFamily(MetricFamily):
    """Fréchet Inception Distance (Heusel et al., 2017) on pool3 features."""

    key: ClassVar[str] = "fid"
    output: ClassVar[str] = "fid"

    def compute(self, fake: dict[str, Tensor], real: dict[str, Any] | None) -> dict[str, float]:
        assert real is not None
        features = fake[self.fake_layer]
        real_features = (real.get("features") or {}).get(self.real_layer)
        stats = real["stats"][self.real_layer]
        return {self.output: frechet_distance(fid_statistics(features), stats, features, real_features)}


@dataclass
class KIDFamily(MetricFamily):
    """Kernel Inception Distance (Bińkowski et al., 2018): cubic polynomial kernel MMD² on random subsets.

    Args:
        subsets: Number of random subsets (torch-fidelity default 100).
        subset_size: Images per subset (default 1000); clipped to the smaller set, recorded in the card.
    """

    key: ClassVar[str] = "kid"
    subsets: int = 100
    subset_size: int = 1000
    _used_subset_size: int | None = field(default=None, init=False, repr=False)

    def settings(self) -> dict[str, Any]:
        size = self._used_subset_size or self.subset_size
        return {
            "kid_subsets": self.subsets,
            "kid_subset_size": size,
            "kid_kernel": "poly3",
            "rng_seed": TORCH_FIDELITY_RNG_SEED,
        }

    def compute(self, fake: dict[str, Tensor], real: dict[str, Any] | None) -> dict[str, float]:
        assert real is not None
        f_fake, f_real = fake[self.fake_layer].double(), real["features"][self.real_layer].double()
        self._used_subset_size = min(self.subset_size, len(f_fake), len(f_real))
        out = kid_features_to_metric(
            f_fake,
            f_real,
            kid_subsets=self.subsets,
            kid_subset_size=self._used_subset_size,
            rng_seed=TORCH_FIDELITY_RNG_SEED,
            verbose=False,
        )
        return {"kid_mean": out["kernel_inception_distance_mean"], "kid_std": out["kernel_inception_distance_std"]}


@dataclass
class PrecisionRecallFamily(MetricFamily):
    """Improved precision and recall (Kynkäänniemi et al., 2019), torch-fidelity's k-NN balls.

    Args:
        neighborhood: ``k`` of the k-NN radius (torch-fidelity default 3).
    """

    key: ClassVar[str] = "pr"
    neighborhood: int = 3

    def settings(self) -> dict[str, Any]:
        return {"prc_neighborhood": self.neighborhood}

    def compute(self, fake: dict[str, Tensor], real: dict[str, Any] | None) -> dict[str, float]:
        assert real is not None
        out = prc_features_to_metric(
            fake[self.fake_layer].double(),
            real["features"][self.real_layer].double(),
            prc_neighborhood=self.neighborhood,
            verbose=False,
        )
        return {"precision": out["precision"], "recall": out["recall"], "f_score": out["f_score"]}


@dataclass
class ISFamily(MetricFamily):
    """Inception Score (Salimans et al., 2016) from Inception's 1008-way logits (official weights only).

    Args:
        splits: Splits of the samples (torch-fidelity default 10).
    """

    key: ClassVar[str] = "is"
    fake_layer: ClassVar[str] = "logits_unbiased"
    real_layer: ClassVar[str | None] = None
    splits: int = 10
    output: ClassVar[str] = "is"

    def settings(self) -> dict[str, Any]:
        return {"isc_splits": self.splits, "rng_seed": TORCH_FIDELITY_RNG_SEED}

    def compute(self, fake: dict[str, Tensor], real: dict[str, Any] | None) -> dict[str, float]:
        logits = fake[self.fake_layer]
        if not torch.isfinite(logits).all():
            raise ValueError("Inception logits are not finite: these weights have no classifier (offline conversion).")
        out = isc_features_to_metric(logits, splits=self.splits, shuffle=True, rng_seed=TORCH_FIDELITY_RNG_SEED)
        return {f"{self.output}_mean": out["inception_score_mean"], f"{self.output}_std": out["inception_score_std"]}


@dataclass
class ClassifierFDFamily(FIDFamily):
    """FD-classifier: Fréchet distance on the dataset classifier's penultimate features (NOT FID)."""

    key: ClassVar[str] = "fd_classifier"
    extractor_kind: ClassVar[str] = "classifier"
    fake_layer: ClassVar[str] = "penultimate"
    real_layer: ClassVar[str | None] = "penultimate"
    output: ClassVar[str] = "fd_classifier"


@dataclass
class ClassifierISFamily(ISFamily):
    """Classifier Inception Score: the IS formula on the dataset classifier's logits (NOT Inception's IS)."""

    key: ClassVar[str] = "is_classifier"
    extractor_kind: ClassVar[str] = "classifier"
    fake_layer: ClassVar[str] = "logits"
    real_layer: ClassVar[str | None] = None
    output: ClassVar[str] = "is_classifier"


FAMILIES: dict[str, type[MetricFamily]] = {
    cls.key: cls
    for cls in (FIDFamily, KIDFamily, PrecisionRecallFamily, ISFamily, ClassifierFDFamily, ClassifierISFamily)
}
