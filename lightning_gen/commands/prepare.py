"""``lightning-gen prepare``: write LitData shards of a dataset, to a folder or ``s3://``, with N workers.

    lightning-gen prepare --config experiments/ddpm_mnist.yaml --out shards/mnist
    lightning-gen prepare --data datamodules.FashionMNISTDataModule --out shards/fashion_mnist --workers 4
    lightning-gen prepare --data datamodules.ImageFolderDataModule --data.root photos/ --data.image_size 64 \\
        --out s3://bucket/photos64 --endpoint_url http://127.0.0.1:9000
    lightning-gen prepare --config experiments/gpt_shakespeare_char.yaml --out shards/shakespeare_char

The source is a datamodule: the ``data:`` section of ``--config`` (an experiment YAML or a run's
``config.yaml``; the other sections are ignored), or ``--data CLASS`` with ``--data.KEY VALUE``
arguments; ``--data.KEY`` also overrides a value of ``--config``. Image datamodules (MNIST,
Fashion-MNIST, image folders, labelled or not) give image shards, the text datamodule token
shards. Train from them with ``datamodules.streaming.ShardImageDataModule`` or
``ShardTokenDataModule`` (``experiments/data/*.yaml``; docs/data.md).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from gen_common.errors import ConfigError

PROG = "lightning-gen prepare"


@dataclass
class PrepareOptions:
    """Write LitData shards of a datamodule's data (images or tokens) to a folder or an S3 prefix.

    Args:
        out: The new shard set: a folder, or ``s3://bucket/prefix``; it must not exist (or be empty).
        workers: Worker processes writing in parallel.
        chunk_mb: Target size of a chunk file in MB (64 suits object storage; smaller for tiny sets).
        endpoint_url: S3 endpoint of an S3-compatible server (e.g. ``http://127.0.0.1:9000``); ``None``: AWS.
        storage_options: More ``boto3`` S3 client arguments (``region_name``...).
        staging_dir: Local folder an ``s3://`` output is written to before it is uploaded (default: temp dir).
        progress: ``auto`` (a bar in an interactive terminal), ``on`` or ``off``.
    """

    out: str
    workers: int = 2
    chunk_mb: float = 64.0
    endpoint_url: str | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)
    staging_dir: str | None = None
    progress: Literal["auto", "on", "off"] = "auto"


def data_section(path: str) -> dict[str, Any]:
    """The ``data:`` section of an experiment YAML or a run's ``config.yaml``."""
    if not Path(path).is_file():
        raise ConfigError(f"`--config` {path} does not exist.")
    config = yaml.safe_load(Path(path).read_text()) or {}
    data = config.get("data") if isinstance(config, dict) else None
    if not isinstance(data, dict) or "class_path" not in data:
        raise ConfigError(f"{path} has no `data: {{class_path: ..., init_args: ...}}` section to prepare shards from.")
    return {"class_path": data["class_path"], "init_args": data.get("init_args") or {}}


def parse(argv: list[str]) -> tuple[PrepareOptions, Any, Any]:
    """``argv`` -> (options, the datamodule, its :class:`DataSpec`); ``--config`` becomes a leading ``--data``."""
    import json

    from jsonargparse import ArgumentParser
    from lightning import LightningDataModule

    from datamodules.streaming.write import DataSpec
    from lightning_gen.utils.options import normalize_argv

    argv = list(argv)
    if "--config" in argv or any(a.startswith("--config=") for a in argv):
        at = next(i for i, a in enumerate(argv) if a == "--config" or a.startswith("--config="))
        path = argv[at].partition("=")[2] or (argv[at + 1] if at + 1 < len(argv) else "")
        del argv[at : at + (1 if "=" in argv[at] else 2)]
        argv = ["--data", json.dumps(data_section(path))] + argv
    data_args, own = _split_data_flags(argv)
    parser = ArgumentParser(prog=PROG, description=(PrepareOptions.__doc__ or "").split("\n\n")[0], default_env=False)
    parser.add_class_arguments(PrepareOptions, as_group=False)
    parser.add_subclass_arguments(LightningDataModule, "data", required=True)
    cfg = parser.parse_args(data_args + normalize_argv(PrepareOptions, own))
    init = parser.instantiate_classes(cfg)
    options = PrepareOptions(**{k: cfg[k] for k in PrepareOptions.__dataclass_fields__})
    init_args = cfg.data.get("init_args")
    spec = DataSpec(cfg.data.class_path, init_args.as_dict() if init_args else {})
    return options, init.data, spec


def _split_data_flags(argv: list[str]) -> tuple[list[str], list[str]]:
    """``--data...`` flags with their values (in order, for jsonargparse as they are), and the other tokens."""
    data, own, tokens = [], [], list(argv)
    while tokens:
        token = tokens.pop(0)
        if not token.startswith("--data"):
            own.append(token)
            continue
        data.append(token)
        if "=" not in token and tokens and not tokens[0].startswith("--"):
            data.append(tokens.pop(0))
    return data, own


def print_help() -> None:
    """``--help`` without importing Lightning: this command's flags, and how the source datamodule is given."""
    import argparse

    from jsonargparse import ArgumentParser, DefaultHelpFormatter

    class Formatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
        """Keeps the examples of the description on their own lines."""

    parser = ArgumentParser(prog=PROG, description=__doc__.strip(), default_env=False, formatter_class=Formatter)
    parser.add_class_arguments(PrepareOptions, as_group=False)
    parser.add_argument("--config", help="Experiment YAML or run config.yaml whose `data:` section is the source.")
    parser.add_argument(
        "--data",
        help="Source datamodule class (e.g. datamodules.MNISTDataModule); --data.KEY VALUE sets its arguments.",
    )
    parser.print_help()


def main(argv: list[str]) -> None:
    if "--help" in argv or "-h" in argv:
        print_help()
        return
    from datamodules.base import ImageDataModule
    from datamodules.streaming.store import ShardStore
    from datamodules.streaming.write import ShardWriter
    from gen_common.progress import interactive

    options, datamodule, spec = parse(argv)
    writer = ShardWriter(
        ShardStore(options.out, options.endpoint_url, options.storage_options),
        workers=options.workers,
        chunk_mb=options.chunk_mb,
        progress=options.progress == "on" or (options.progress == "auto" and interactive()),
        staging_dir=options.staging_dir,
    )
    if hasattr(type(datamodule), "train_tokens") and hasattr(type(datamodule), "tokenizer"):
        manifest, reader = writer.write_tokens(spec, datamodule), "ShardTokenDataModule"
    elif isinstance(datamodule, ImageDataModule):
        manifest, reader = writer.write_images(spec, datamodule), "ShardImageDataModule"
    else:
        raise ConfigError(
            f"{spec.class_path} is neither an image datamodule (datamodules.base.ImageDataModule) nor the text "
            "datamodule (datamodules.text.TextDataModule); `lightning-gen prepare` writes shards of those."
        )
    counts = ", ".join(f"{name} {n}" for name, n in manifest.splits.items())
    unit = "images" if manifest.kind == "images" else "tokens"
    print(
        f"lightning-gen prepare: wrote {manifest.kind} shards of {manifest.dataset_id} to {options.out} "
        f"({unit}: {counts}). Train from them with `--data=datamodules.streaming.{reader} "
        f"--data.init_args.root={options.out}` (docs/data.md).",
        file=sys.stdout,
    )
