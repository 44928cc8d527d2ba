"""Image-quality callbacks: FID, KID, precision/recall, IS, and the classifier-based FD/IS.

One callback per metric family; callbacks that share an extractor and the same evaluation
settings (samples, split, seed, cadence...) share ONE feature pass: the first of them that is due
runs :class:`~lightning_gen.metrics.evaluator.ImageEvaluator` for the whole group and logs every
family's numbers. Logged keys: ``<prefix>/fid``, ``<prefix>/kid_mean``... (see
:mod:`lightning_gen.metrics.fidelity`); each family's protocol card goes to the loggers'
hyperparameters (W&B run config) under ``eval_protocol/<family>``.

Per evaluation: exactly ``num_samples`` images from ``pl_module.sample(n, generator)`` in eval
mode under ``torch.no_grad`` (a model with EMA weights samples with them in ``sample``), split
exactly across ranks, features gathered on every rank, metrics computed on rank 0 and broadcast
so every rank logs the same value (``ModelCheckpoint(monitor="eval/fid")`` works under DDP).
Real-image features come from the on-disk cache after the first time.

    trainer:
      callbacks:
        - class_path: lightning_gen.callbacks.FID
          init_args: {num_samples: 10000, every_n_epochs: 5}
        - class_path: lightning_gen.callbacks.KID   # same settings: shares FID's feature pass
          init_args: {num_samples: 10000, every_n_epochs: 5}
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from gen_common.errors import ConfigError, LightningGenError
from lightning_gen.callbacks.cadence import Cadence
from lightning_gen.metrics.cache import FeatureCache
from lightning_gen.metrics.distributed import broadcast_object, rank_and_world
from lightning_gen.metrics.evaluator import EvalResult, EvalSettings, ImageEvaluator, split_dataset
from lightning_gen.metrics.extractors import ImageFeatureExtractor, build_inception_extractor
from lightning_gen.metrics.fidelity import (
    ClassifierFDFamily,
    ClassifierISFamily,
    FIDFamily,
    ISFamily,
    KIDFamily,
    MetricFamily,
    PrecisionRecallFamily,
)
from lightning_gen.models.base import ImageGenerator


class ImageMetricCallback(Callback):
    """Base of the metric callbacks (common arguments below; subclasses add their family's own).

    Args:
        num_samples: Generated images per evaluation, exactly (e.g. 10000 for reported numbers).
        num_real: Real images (the first ``num_real`` of ``split``); ``None``: the whole split.
        split: Real-image split of the datamodule: ``train``, ``val`` or ``test``.
        every_n_epochs: Evaluate after every n-th validation epoch (``None``: never then; see
            :mod:`~lightning_gen.callbacks.cadence`).
        every_n_steps: Also/instead evaluate after every n-th optimizer step (``None``: never then).
        seed: Noise seed of the samples (same seed: same noise every evaluation).
        sample_chunk: Images per ``sample`` call; part of the noise protocol.
        batch_size: Images per feature-extractor forward (no effect on the numbers).
        weights: Inception weights: ``auto``, ``official``, ``offline`` or a file path.
        cache_dir: Cache of real features, weights and classifiers (default: user cache dir).
        prefix: Logged keys are ``<prefix>/<metric>``.
        extractor: A ready :class:`ImageFeatureExtractor` to use instead of building one (tests, custom nets).
    """

    family_cls: type[MetricFamily] = FIDFamily

    def __init__(
        self,
        num_samples: int = 10000,
        num_real: int | None = None,
        split: str = "test",
        every_n_epochs: int | None = 1,
        every_n_steps: int | None = None,
        seed: int = 0,
        sample_chunk: int = 100,
        batch_size: int = 64,
        weights: str = "auto",
        cache_dir: str | None = None,
        prefix: str = "eval",
        extractor: ImageFeatureExtractor | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.cadence = Cadence(every_n_epochs, every_n_steps, name)
        self.settings = EvalSettings(num_samples, num_real, split, seed, sample_chunk, batch_size)
        self.every_n_epochs = every_n_epochs
        self.every_n_steps = every_n_steps
        self.weights = weights
        self.cache_dir = cache_dir
        self.prefix = prefix
        self.extractor = extractor
        self.family = self._make_family()
        self.last_result: EvalResult | None = None
        self._done: tuple | None = None
        self._cards_logged: dict[str, Any] = {}

    def _make_family(self) -> MetricFamily:
        return self.family_cls()

    # --- grouping: callbacks with the same key share one feature pass -------------------------------
    def group_key(self) -> tuple:
        return (
            self.family.extractor_kind,
            self.settings,
            self.every_n_epochs,
            self.every_n_steps,
            self.weights,
            self.cache_dir,
            self.prefix,
            id(self.extractor) if self.extractor else None,
            self._extractor_recipe(),
        )

    def _extractor_recipe(self) -> tuple:
        return ()

    def _peers(self, trainer: L.Trainer) -> list[ImageMetricCallback]:
        return [
            c for c in trainer.callbacks if isinstance(c, ImageMetricCallback) and c.group_key() == self.group_key()
        ]

    def _build_extractor(self, trainer: L.Trainer, layers: list[str]) -> ImageFeatureExtractor:
        return build_inception_extractor(layers, self.weights, self.cache_dir)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Build the group's extractor now, so a missing weight or dataset fails before training."""
        if not isinstance(pl_module, ImageGenerator):
            raise ConfigError(
                f"{type(self).__name__} evaluates image generators (lightning_gen.models.base.ImageGenerator: VAE, GAN, "
                f"Diffusion); {type(pl_module).__name__} is not one. Fix: remove it from `trainer.callbacks` for this model."
            )
        if self.extractor is not None:
            return
        peers = self._peers(trainer)
        layers = sorted(
            {p.family.fake_layer for p in peers} | {p.family.real_layer for p in peers if p.family.real_layer}
        )
        rank, _ = rank_and_world()
        extractor, error = None, None
        if rank == 0:  # rank 0 converts / trains once; the others then read the cached files
            try:
                extractor = self._build_extractor(trainer, layers)
            except Exception as err:  # noqa: BLE001 - re-raised below, after telling the other ranks
                error = err
        failed = broadcast_object(None if error is None else f"{type(error).__name__}: {error}")  # also the barrier
        if error is not None:
            raise error
        if failed is not None:
            raise LightningGenError(f"{type(self).__name__}: rank 0 could not build the feature extractor ({failed}).")
        if rank != 0:
            extractor = self._build_extractor(trainer, layers)
        for peer in peers:
            peer.extractor = extractor

    # --- cadence ------------------------------------------------------------------------------------
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: ImageGenerator) -> None:
        if self.cadence.at_validation_end(trainer):
            self._maybe_run(trainer, pl_module, ("epoch", trainer.current_epoch, trainer.global_step))

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: ImageGenerator, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.cadence.at_train_batch_end(trainer):
            self._maybe_run(trainer, pl_module, ("step", trainer.global_step))

    def _maybe_run(self, trainer: L.Trainer, pl_module: ImageGenerator, when: tuple) -> None:
        if self._done == when:
            return  # a peer already evaluated this group now
        peers = self._peers(trainer)
        result = self.evaluate(trainer, pl_module, [p.family for p in peers])
        for peer in peers:
            peer._done = when
            peer.last_result = EvalResult(
                {k: result.values[k] for k in result.cards[peer.family.key]["keys"]},
                {peer.family.key: result.cards[peer.family.key]},
            )
        for key, value in result.values.items():
            pl_module.log(f"{self.prefix}/{key}", float(value), sync_dist=False, rank_zero_only=False)
        self._log_cards(trainer, result)

    def evaluate(self, trainer: L.Trainer, pl_module: ImageGenerator, families: list[MetricFamily]) -> EvalResult:
        """One shared pass for ``families`` (every rank calls; every rank gets rank 0's numbers)."""
        assert self.extractor is not None, "setup() builds the extractor"
        self.extractor.to(pl_module.device)
        cache = FeatureCache(None if self.cache_dir is None else f"{self.cache_dir}/real_features")
        evaluator = ImageEvaluator(families, self.extractor, self.settings, cache)
        datamodule = trainer.datamodule
        needs_real = any(f.real_layer for f in families)
        if needs_real and datamodule is None:
            raise ConfigError(f"{type(self).__name__} compares with real images: run it with a datamodule.")
        dataset = split_dataset(datamodule, self.settings.split) if needs_real else None
        dataset_id = getattr(datamodule, "dataset_id", type(datamodule).__name__) if datamodule is not None else None
        with pl_module.eval_mode(), torch.no_grad():
            return evaluator.evaluate(
                lambda n, g: pl_module.sample(n, generator=g), dataset, dataset_id, pl_module.device
            )

    def _log_cards(self, trainer: L.Trainer, result: EvalResult) -> None:
        """Protocol cards into every logger's hyperparameters (W&B config), when new or changed."""
        if not trainer.is_global_zero:
            return
        new = {k: v for k, v in result.cards.items() if self._cards_logged.get(k) != v}
        if not new:
            return
        self._cards_logged.update(new)
        for logger in trainer.loggers:
            logger.log_hyperparams({"eval_protocol": {f"{self.prefix}/{k}": v for k, v in new.items()}})


class FID(ImageMetricCallback):
    """Fréchet Inception Distance (torch-fidelity's estimator, Inception pool3). Logs ``<prefix>/fid``."""

    family_cls = FIDFamily


class KID(ImageMetricCallback):
    """Kernel Inception Distance. Logs ``<prefix>/kid_mean`` and ``kid_std``.

    Args:
        subsets: Random subsets (torch-fidelity default 100).
        subset_size: Images per subset (default 1000; clipped to the sample counts, recorded in the card).
        **kwargs: The common arguments of :class:`ImageMetricCallback`.
    """

    family_cls = KIDFamily

    def __init__(self, subsets: int = 100, subset_size: int = 1000, **kwargs: Any) -> None:
        self.subsets, self.subset_size = subsets, subset_size
        super().__init__(**kwargs)

    def _make_family(self) -> MetricFamily:
        return KIDFamily(subsets=self.subsets, subset_size=self.subset_size)


class PrecisionRecall(ImageMetricCallback):
    """Improved precision/recall. Logs ``<prefix>/precision``, ``recall``, ``f_score``.

    Args:
        neighborhood: ``k`` of the k-NN radius (default 3).
        **kwargs: The common arguments of :class:`ImageMetricCallback`.
    """

    family_cls = PrecisionRecallFamily

    def __init__(self, neighborhood: int = 3, **kwargs: Any) -> None:
        self.neighborhood = neighborhood
        super().__init__(**kwargs)

    def _make_family(self) -> MetricFamily:
        return PrecisionRecallFamily(neighborhood=self.neighborhood)


class InceptionScore(ImageMetricCallback):
    """Inception Score; needs the official Inception weights (fails at setup with the fix otherwise).

    Args:
        splits: Splits of the samples (default 10).
        **kwargs: The common arguments of :class:`ImageMetricCallback`.
    """

    family_cls = ISFamily

    def __init__(self, splits: int = 10, **kwargs: Any) -> None:
        self.splits = splits
        super().__init__(**kwargs)

    def _make_family(self) -> MetricFamily:
        return ISFamily(splits=self.splits)


class _ClassifierMetricCallback(ImageMetricCallback):
    """Classifier-based metrics: a small CNN trained once on the datamodule's train split (cached)."""

    def __init__(self, classifier_epochs: int = 1, classifier_seed: int = 0, **kwargs: Any) -> None:
        self.classifier_epochs = classifier_epochs
        self.classifier_seed = classifier_seed
        super().__init__(**kwargs)

    def _extractor_recipe(self) -> tuple:
        return (self.classifier_epochs, self.classifier_seed)

    def _build_extractor(self, trainer: L.Trainer, layers: list[str]) -> ImageFeatureExtractor:
        from lightning_gen.metrics.classifier import build_classifier_extractor

        if trainer.datamodule is None:
            raise ConfigError(
                f"{type(self).__name__} trains its classifier on the datamodule's train split: run it with a datamodule."
            )
        return build_classifier_extractor(
            trainer.datamodule, layers, self.cache_dir, self.classifier_epochs, self.classifier_seed
        )


class ClassifierFD(_ClassifierMetricCallback):
    """FD-classifier: Fréchet distance on a dataset classifier's features (not FID). Logs ``<prefix>/fd_classifier``.

    Args:
        classifier_epochs: Training epochs of the cached classifier (part of its cache key).
        classifier_seed: Its training seed.
        **kwargs: The common arguments of :class:`ImageMetricCallback`.
    """

    family_cls = ClassifierFDFamily


class ClassifierIS(_ClassifierMetricCallback):
    """IS-classifier: the IS formula on a dataset classifier's logits (not Inception's IS).

    Logs ``<prefix>/is_classifier_mean`` and ``is_classifier_std``.

    Args:
        splits: Splits of the samples (default 10).
        classifier_epochs: Training epochs of the cached classifier (part of its cache key).
        classifier_seed: Its training seed.
        **kwargs: The common arguments of :class:`ImageMetricCallback`.
    """

    family_cls = ClassifierISFamily

    def __init__(self, splits: int = 10, classifier_epochs: int = 1, classifier_seed: int = 0, **kwargs: Any) -> None:
        self.splits = splits
        super().__init__(classifier_epochs=classifier_epochs, classifier_seed=classifier_seed, **kwargs)

    def _make_family(self) -> MetricFamily:
        return ClassifierISFamily(splits=self.splits)
