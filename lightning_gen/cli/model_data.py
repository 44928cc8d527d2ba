"""Which data a model takes, checked before anything is built or written.

The CLI links what a datamodule knows (``image_shape``, ``vocab_size``) into the model. A model
whose constructor takes one of these needs a datamodule that provides it: a GPT needs token ids,
a VAE or GAN needs images. Without this check a mismatch surfaces as jsonargparse's traceback.
"""

from __future__ import annotations

import inspect
from typing import Any

from gen_common.errors import ConfigError
from lightning_gen.utils.imports import import_object

# linked value -> (what the data is, an example datamodule, its experiment file, models for it)
DATA_KINDS: dict[str, tuple[str, str, str, str]] = {
    "image_shape": (
        "images",
        "datamodules.MNISTDataModule",
        "experiments/vae_mnist.yaml",
        "an image model (lightning_gen.models.VAE or GAN)",
    ),
    "vocab_size": (
        "token ids",
        "datamodules.text.TextDataModule",
        "experiments/gpt_shakespeare_char.yaml",
        "a text model (lightning_gen.models.GPT)",
    ),
}


def _import(class_path: str) -> Any:
    try:
        return import_object(class_path)
    except ConfigError:
        return None  # jsonargparse reports unknown classes itself


def check_model_fits_data(model_class_path: str | None, data_class_path: str | None) -> None:
    """Raise one :class:`ConfigError` paragraph when the datamodule lacks a value the model needs."""
    model_cls = _import(model_class_path) if model_class_path else None
    data_cls = _import(data_class_path) if data_class_path else None
    if model_cls is None or data_cls is None:
        return
    takes = inspect.signature(model_cls.__init__).parameters
    needs = [key for key in DATA_KINDS if key in takes]
    missing = [key for key in needs if not hasattr(data_cls, key)]
    if not missing:
        return
    key = missing[0]
    kind, example, experiment, _ = DATA_KINDS[key]
    has = [k for k in DATA_KINDS if hasattr(data_cls, k)]
    yields = f"yields {DATA_KINDS[has[0]][0]} (it has `{has[0]}`, no `{key}`)" if has else f"has no `{key}`"
    other = f", or train {DATA_KINDS[has[0]][3]} on this data" if has else ""
    raise ConfigError(
        f"The model {model_class_path} trains on {kind} (it needs the datamodule's `{key}`), but {data_class_path} "
        f"{yields}. Fix: give {model_cls.__name__} a datamodule of {kind}, e.g. `--data={example}` (as {experiment} does){other}. "
        "Nothing was written."
    )
