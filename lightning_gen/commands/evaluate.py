"""``lightning-gen evaluate``: image metrics of a checkpoint or a folder of images, against a datamodule or a folder.

    lightning-gen evaluate --real real_images/ --fake samples/ --metrics fid kid pr
    lightning-gen evaluate --ckpt runs/vae_mnist/<id>/checkpoints/last.ckpt --metrics fid kid pr \\
        --num_samples 1000 --num_real 1000 --out eval.json
    lightning-gen evaluate --images samples/ --config experiments/vae_mnist.yaml --metrics fd_classifier

Two folders (``--real``, ``--fake``, torch-fidelity's ``--input1 --input2``) need no config: each
folder is checked first (unusable files are listed in one paragraph), the real folder's features
are cached under the SHA-256 of its files' names and bytes. Otherwise the real images are a split
of the datamodule of ``--config`` (an experiment YAML or a run's ``config.yaml``; default: the
``config.yaml`` of the checkpoint's run directory), which also gives the model class. A one-line
warning says when the sets differ in channels or size (from each other, or from the config's
dataset). Metrics are the families of :mod:`lightning_gen.metrics.fidelity`: ``fid kid pr is
fd_classifier is_classifier``. Prints a table, writes JSON (values + a protocol card per metric).
``--compare_torch_fidelity`` also runs ``torch_fidelity.calculate_metrics`` on the very same images
(generated ones stay in memory) with the same weights and prints the relative difference.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from gen_common.errors import ConfigError, LightningGenError
from lightning_gen.metrics.settings import EvalSettings, FeatureSettings, Precision
from lightning_gen.utils.imports import import_object
from lightning_gen.utils.options import parse_options

Tensor = Any  # torch.Tensor; torch loads when a command runs, not for --help (jsonargparse would import a TYPE_CHECKING block)


@dataclass
class EvaluateOptions:
    """FID/KID/PR/IS and classifier metrics of a checkpoint or an image folder, against a dataset or a folder of real images.

    Args:
        ckpt: Checkpoint of a model with ``sample(n, generator)`` (this or ``--images``).
        images: Folder of generated images (png/jpg/bmp/webp), evaluated as they are (also ``--fake``).
        real: Folder of real images to compare with (instead of a datamodule split; no ``--config`` needed).
        config: Experiment YAML or run ``config.yaml`` with ``data:`` (and ``model:``); default: the
            ``config.yaml`` of ``--ckpt``'s run dir.
        model_class: Model class path (default: ``model.class_path`` of the config).
        metrics: Any of: fid kid pr is fd_classifier is_classifier.
        num_samples: Generated images (``--ckpt``); with ``--images``/``--fake``: the first N by file name.
        num_real: Real images: the first N of the split, or of ``--real`` by file name (default: all).
        split: Datamodule split of the real images.
        seed: Noise seed of the generated images.
        sample_chunk: Images generated per ``sample`` call (a chunk's noise is fixed by the seed).
        batch_size: Images per extractor forward (does not change results).
        weights: Inception weights: auto, official, offline or a path.
        precision: Inception precision; bf16 (autocast) changes the numbers (see the protocol card).
        kid_subset_size: KID subset size (default: the KID family's, 1000).
        classifier_epochs: Epochs of the dataset classifier (``fd_classifier``/``is_classifier``).
        cache_dir: Cache of real features, weights and classifiers (default: the user cache).
        device: cpu, cuda, cuda:1 ...
        out: JSON record; never overwritten (default: a new ``eval/evaluate-<time>-<xxxx>/evaluation.json``
            of the ``--ckpt``'s run, or of the cwd).
        compare_torch_fidelity: Also run ``torch_fidelity.calculate_metrics`` on the same images.
    """

    ckpt: str | None = None
    images: str | None = None
    real: str | None = None
    config: str | None = None
    model_class: str | None = None
    metrics: list[str] = field(default_factory=lambda: ["fid", "kid", "pr"])
    num_samples: int = EvalSettings.num_samples
    num_real: int | None = EvalSettings.num_real
    split: Literal["train", "val", "test"] = EvalSettings.split  # type: ignore[assignment]
    seed: int = EvalSettings.seed
    sample_chunk: int = EvalSettings.sample_chunk
    batch_size: int = EvalSettings.batch_size
    weights: str = FeatureSettings.weights
    precision: Precision = FeatureSettings.precision
    kid_subset_size: int | None = None
    classifier_epochs: int = 1
    cache_dir: str | None = FeatureSettings.cache_dir
    device: str = "cpu"
    out: str | None = None
    compare_torch_fidelity: bool = False


def parse_args(argv: list[str]) -> EvaluateOptions:
    """``argv`` -> options; exactly one of ``--ckpt`` and ``--images``/``--fake``."""
    args = parse_options(EvaluateOptions, argv, "lightning-gen evaluate", aliases={"--fake": "--images"})
    if (args.ckpt is None) == (args.images is None):
        raise ConfigError(
            "Give exactly one of `--ckpt CKPT` (a checkpoint to sample) and `--images DIR` (`--fake DIR`: generated images)."
        )
    return args


def load_config(args: EvaluateOptions) -> dict[str, Any]:
    """The YAML of ``--config`` (or of the checkpoint's run); ``{}`` when ``--real`` makes it optional."""
    path = args.config
    if path is None and args.ckpt:
        candidate = Path(args.ckpt).resolve().parent.parent / "config.yaml"
        path = str(candidate) if candidate.is_file() else None
    if path is None and args.real:
        return {}
    if path is None:
        raise ConfigError(
            "No real images: pass `--real DIR` (a folder of real images) or `--config` (an experiment YAML or a run's "
            "config.yaml with a `data:` section)."
        )
    if not Path(path).is_file():
        raise ConfigError(f"`--config` {path} does not exist.")
    config = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(config.get("data"), dict) or "class_path" not in config["data"]:
        raise ConfigError(f"{path} has no `data: {{class_path: ..., init_args: ...}}` section.")
    return config


def build_datamodule(config: dict[str, Any]) -> Any:
    data = config["data"]
    return import_object(data["class_path"], "datamodule class")(**(data.get("init_args") or {}))


def load_model(args: EvaluateOptions, config: dict[str, Any]) -> Any:
    class_path = args.model_class or (config.get("model") or {}).get("class_path")
    if not class_path:
        raise ConfigError(
            "Unknown model class: pass `--model_class` (e.g. lightning_gen.models.VAE) or a config with `model.class_path`."
        )
    cls = import_object(class_path, "model class")
    ckpt = Path(args.ckpt)
    if not ckpt.is_file():
        raise LightningGenError(f"No checkpoint at {ckpt}; runs keep theirs in runs/<name>/<id>/checkpoints/.")
    try:
        model = cls.load_from_checkpoint(ckpt, map_location=args.device)
    except (KeyError, TypeError, RuntimeError) as err:
        raise LightningGenError(f"{ckpt} could not be loaded as {class_path} ({type(err).__name__}: {err}).") from None
    from lightning_gen.models.base import ImageGenerator

    if not isinstance(model, ImageGenerator):
        raise ConfigError(
            f"{class_path} is not an image generator (lightning_gen.models.base.ImageGenerator); only image models "
            f"can be evaluated with `--ckpt`."
        )
    return model.eval()


def scan_folders(args: EvaluateOptions) -> tuple[Any, Any]:
    """Scans of ``--images``/``--fake`` and ``--real`` (``None`` where not given); every unusable file in one paragraph."""
    from lightning_gen.metrics.image_folder import scan_image_folder

    scans, problems = [], []
    fake_flag = "--fake" if args.real else "--images"
    for folder, limit, flag in ((args.images, args.num_samples, fake_flag), (args.real, args.num_real, "--real")):
        try:
            scans.append(scan_image_folder(folder, limit, flag) if folder else None)
        except ConfigError as err:
            scans.append(None)
            problems.append(str(err))
    if problems:
        raise ConfigError(" ".join(problems))
    return scans[0], scans[1]


def warn_shapes(fake_scan: Any, real_scan: Any, datamodule: Any) -> list[str]:
    """One-line warnings (printed to stderr) where the image sets differ in channels or size."""
    from lightning_gen.metrics.image_folder import shape_mismatch

    fake_flag = "--fake" if real_scan else "--images"
    sets = [(f"{fake_flag} {fake_scan.folder}", fake_scan.shape)] if fake_scan else []
    sets += [(f"--real {real_scan.folder}", real_scan.shape)] if real_scan else []
    if datamodule is not None and real_scan is not None:
        sets.append((f"the dataset of --config ({datamodule.dataset_id})", tuple(datamodule.image_shape)))
    warnings = [
        shape_mismatch(a, b, name_a, name_b) for i, (name_a, a) in enumerate(sets) for name_b, b in sets[i + 1 :]
    ]
    if datamodule is not None and real_scan is None and fake_scan is not None:
        warnings.append(
            shape_mismatch(
                fake_scan.shape,
                tuple(datamodule.image_shape),
                f"{fake_flag} {fake_scan.folder}",
                f"the dataset of --config ({datamodule.dataset_id})",
            )
        )
    lines = [w for w in warnings if w]
    for line in lines:
        print(line, file=sys.stderr)
    return lines


def generated_images(
    model: Any, n: int, chunk: int, seed: int, device: str, labels: Tensor | None = None, **conditioning: Any
) -> Tensor:
    """The same ``n`` samples an evaluation draws (chunk noise from ``seed``), as uint8, in memory.

    ``labels`` (``(n,)``, conditional models) are cut into the chunks; ``conditioning`` (e.g. a
    diffusion model's ``sampler``, ``steps``, ``guidance_scale``) goes to every ``sample`` call
    (``lightning-gen sample``; an evaluation passes neither: the family's defaults).
    """
    import torch

    from lightning_gen.metrics.distributed import chunk_seed
    from lightning_gen.metrics.extractors import to_uint8

    out = []
    with torch.no_grad():
        for start in range(0, n, chunk):
            size = min(chunk, n - start)
            if labels is not None:
                conditioning["labels"] = labels[start : start + size]
            g = torch.Generator(device=device).manual_seed(chunk_seed(seed, start))
            out.append(to_uint8(model.sample(size, generator=g, **conditioning)).cpu())
    return torch.cat(out)


def evaluate_families(
    families: list[Any],
    args: EvaluateOptions,
    datamodule: Any,
    sample: Any,
    dataset: Any,
    dataset_id: str,
    settings: Any,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Values and protocol cards of ``families``, one feature extractor (Inception, classifier) per group."""
    from lightning_gen.metrics.cache import FeatureCache
    from lightning_gen.metrics.evaluator import ImageEvaluator

    cache = FeatureCache(None if args.cache_dir is None else Path(args.cache_dir) / "real_features")
    values: dict[str, float] = {}
    cards: dict[str, Any] = {}
    for kind in ("inception", "classifier"):
        group = [f for f in families if f.extractor_kind == kind]
        if not group:
            continue
        layers = sorted({f.fake_layer for f in group} | {f.real_layer for f in group if f.real_layer})
        if kind == "inception":
            from lightning_gen.metrics.extractors import build_inception_extractor

            extractor = build_inception_extractor(layers, args.weights, args.cache_dir, precision=args.precision)
        else:
            from lightning_gen.metrics.classifier import build_classifier_extractor

            extractor = build_classifier_extractor(datamodule, layers, args.cache_dir, args.classifier_epochs)
        extractor.to(args.device)
        evaluator = ImageEvaluator(group, extractor, settings, cache)
        result = evaluator.evaluate(sample, dataset, dataset_id, args.device)
        values.update(result.values)
        cards.update(result.cards)
    return values, cards


def run(args: EvaluateOptions) -> dict[str, Any]:
    """Evaluate; returns ``{"values", "cards", "source", "seconds", "warnings"[, "torch_fidelity"]}``."""
    from lightning_gen.metrics.evaluator import EvalSettings, split_dataset
    from lightning_gen.metrics.fidelity import FAMILIES, KIDFamily, MetricFamily
    from lightning_gen.metrics.image_folder import ImageFolderImages

    unknown = [m for m in args.metrics if m not in FAMILIES]
    if unknown:
        raise ConfigError(f"`--metrics` {unknown} unknown; choose from {sorted(FAMILIES)}.")
    config = load_config(args)
    datamodule = build_datamodule(config) if config else None
    families: list[MetricFamily] = [
        (KIDFamily() if args.kid_subset_size is None else KIDFamily(subset_size=args.kid_subset_size))
        if m == "kid"
        else FAMILIES[m]()
        for m in args.metrics
    ]
    if datamodule is None and any(f.extractor_kind == "classifier" for f in families):
        raise ConfigError(
            "`fd_classifier`/`is_classifier` use a classifier trained on a dataset: pass `--config` with its `data:` section, "
            "or drop them from `--metrics`."
        )
    fake_scan, real_scan = scan_folders(args)
    warnings = warn_shapes(fake_scan, real_scan, datamodule)
    fake_channels = datamodule.image_shape[0] if (datamodule is not None and real_scan is None) else None
    images = ImageFolderImages(fake_scan, fake_channels) if fake_scan else None
    model = load_model(args, config) if args.ckpt else None
    num_samples = len(images) if images is not None else args.num_samples
    if real_scan is not None:
        dataset: Any = ImageFolderImages(real_scan)
        dataset_id, split, num_real = f"folder-sha256:{real_scan.sha256}", "folder", None
    else:
        dataset, dataset_id, split, num_real = None, datamodule.dataset_id, args.split, args.num_real
    settings = EvalSettings(num_samples, num_real, split, args.seed, args.sample_chunk, args.batch_size)
    if dataset is None:
        dataset = split_dataset(datamodule, args.split)
    start = time.perf_counter()
    sample = images if images is not None else (lambda n, g: model.sample(n, generator=g))
    values, cards = evaluate_families(families, args, datamodule, sample, dataset, dataset_id, settings)
    report: dict[str, Any] = {
        "source": {
            "ckpt": args.ckpt,
            "images": args.images,
            "real": args.real,
            "datamodule": config["data"]["class_path"] if config else None,
            "dataset_id": dataset_id,
        },
        "values": values,
        "cards": cards,
        "seconds": time.perf_counter() - start,
        "warnings": warnings,
    }
    if args.compare_torch_fidelity:
        fake = (
            images.stack()
            if images is not None
            else generated_images(model, num_samples, args.sample_chunk, args.seed, args.device)
        )
        real = dataset.stack() if real_scan is not None else None
        report["torch_fidelity"] = compare_with_torch_fidelity(fake, dataset, settings, args, values, real)
    return report


def uint8_rgb_dataset(images: Tensor) -> Any:
    """uint8 RGB images for torch-fidelity (grey repeated to 3 channels, as our extractor does)."""
    import torch

    class UInt8Dataset(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i: int) -> Tensor:
            x = images[i]
            return x.expand(3, -1, -1) if x.shape[0] == 1 else x

    return UInt8Dataset()


def real_images_uint8(dataset: Any, n: int) -> Tensor:
    import torch

    from lightning_gen.metrics.extractors import to_uint8

    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, range(n)), batch_size=256, shuffle=False)
    return torch.cat([to_uint8(batch[0]) for batch in loader])


def compare_with_torch_fidelity(
    fake: Tensor, dataset: Any, settings: Any, args: EvaluateOptions, ours: dict[str, float], real: Tensor | None = None
) -> dict[str, Any]:
    """``torch_fidelity.calculate_metrics`` on the same fake and real images (``real``: else from ``dataset``) with the same weights."""
    import torch_fidelity

    from lightning_gen.metrics.fidelity import KIDFamily
    from lightning_gen.metrics.inception import resolve_inception_weights

    if real is None:
        n_real = len(dataset) if settings.num_real is None else settings.num_real
        real = real_images_uint8(dataset, n_real)
    weights = resolve_inception_weights(args.weights, args.cache_dir)
    want = {m for m in args.metrics if m in ("fid", "kid", "pr")}
    if not want:
        return {}
    start = time.perf_counter()
    ref = torch_fidelity.calculate_metrics(
        input1=uint8_rgb_dataset(fake),
        input2=uint8_rgb_dataset(real),
        fid="fid" in want,
        kid="kid" in want,
        prc="pr" in want,
        feature_extractor="inception-v3-compat",
        feature_extractor_weights_path=weights.path,
        kid_subset_size=min(args.kid_subset_size or KIDFamily.subset_size, len(fake), len(real)),
        batch_size=args.batch_size,
        cuda=args.device.startswith("cuda"),
        cache=False,
        verbose=False,
        save_cpu_ram=True,
    )
    names = {
        "frechet_inception_distance": "fid",
        "kernel_inception_distance_mean": "kid_mean",
        "kernel_inception_distance_std": "kid_std",
        "precision": "precision",
        "recall": "recall",
        "f_score": "f_score",
    }
    rows = {names[k]: float(v) for k, v in ref.items() if k in names}
    rel = {k: abs(ours[k] - v) / max(abs(v), 1e-12) for k, v in rows.items() if k in ours}
    return {"values": rows, "relative_difference": rel, "seconds": time.perf_counter() - start}


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"lightning-gen evaluate ({report['source']['dataset_id']})")
    for col in ("metric", "value", "extractor", "weights", "n_fake", "n_real", "split"):
        table.add_column(col, overflow="fold")
    tf = report.get("torch_fidelity", {})
    if tf:
        table.add_column("torch-fidelity")
        table.add_column("rel. diff")
    card_of = {key: card for card in report["cards"].values() for key in card["keys"]}
    for key, value in report["values"].items():
        card = card_of[key]
        row = [
            key,
            f"{value:.6g}",
            card["extractor"],
            f"{card['weights_source']} {str(card['weights_sha256'])[:10]}",
            str(card["n_fake"]),
            str(card["n_real"] or "-"),
            str(card["split"] or "-"),
        ]
        if tf:
            ref = tf["values"].get(key)
            row += [
                f"{ref:.6g}" if ref is not None else "-",
                f"{tf['relative_difference'][key]:.1e}" if ref is not None else "-",
            ]
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:
        console = Console(width=180)  # piped/captured output: no truncated metric names
    console.print(table)


def record_path(args: EvaluateOptions) -> Path:
    """Where this evaluation's record goes: ``--out``, else a new ``eval/evaluate-<time>-<xxxx>/evaluation.json``
    of the checkpoint's run (beside ``--ckpt`` for a checkpoint outside a run, in the cwd for folders)."""
    from lightning_gen.runs.layout import evaluation_dir

    if args.out:
        return Path(args.out)
    if args.ckpt:
        folder = Path(args.ckpt).parent
        owner = folder.parent if folder.name == "checkpoints" else folder
    else:
        owner = Path(".")
    return evaluation_dir(owner, "evaluate") / "evaluation.json"


def existing_record(out: Path) -> ConfigError:
    """The one paragraph for an ``--out`` that names an earlier record."""
    return ConfigError(
        f"`--out` {out} already exists (an earlier evaluation's record), so this result was not written over it. "
        "Pass another `--out`, or drop `--out`: each evaluation of a checkpoint then gets its own record in "
        "<run dir>/eval/evaluate-<time>-<xxxx>/evaluation.json."
    )


def write_record(report: dict[str, Any], out: Path) -> None:
    """Write the record, never over another one (a concurrent evaluation or an earlier ``--out``)."""
    from gen_common.atomic import atomic_write

    try:
        with atomic_write(out, "w", exclusive=True) as f:
            f.write(json.dumps(report, indent=1, default=str))
    except FileExistsError:
        raise existing_record(out) from None


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    out = record_path(args)
    if out.exists():  # refused before minutes of evaluation; checked again when writing
        raise existing_record(out)
    report = run(args)
    report["options"] = dataclasses.asdict(args)
    report["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    print_report(report)
    write_record(report, out)
    print(f"wrote {out}")
