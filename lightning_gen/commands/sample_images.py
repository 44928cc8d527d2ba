"""``lightning-gen sample`` of an image family (VAE, GAN, diffusion): PNGs in a new folder, or one grid PNG.

    lightning-gen sample --ckpt runs/ddpm_mnist/<id>/checkpoints/last.ckpt --num 64 --out grid.png
    lightning-gen sample --ckpt .../last.ckpt --num 1000 --out samples/ --sampler dpm++ --steps 20
    lightning-gen sample --ckpt .../last.ckpt --labels 3 --guidance_scale 3 --out threes.png

The images are :func:`~lightning_gen.commands.evaluate.generated_images`: chunk ``c`` of
``--batch_size`` images draws its noise from ``(--seed, c)``, as ``evaluate --ckpt`` does, so one
seed gives the same PNGs on every run. A folder holds one PNG per image (``000000.png``, with
``-label<k>`` for conditional models), which ``lightning-gen evaluate --fake DIR`` reads; a name
ending in ``.png`` gets one grid (:func:`~lightning_gen.loggers.images.to_uint8_grid`, as the
run's sample grids). Nothing is ever written over: an existing file or non-empty folder is refused.
Each request the model cannot honour (labels on an unconditional model, a label out of range, a
sampler for a one-pass model ...) is one paragraph, before any image is drawn.
"""

from __future__ import annotations

import inspect
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from gen_common.errors import ConfigError

#: ``--sampler`` spellings -> the diffusion family's sampler names (``SamplingConfig.sampler``)
SAMPLERS = {"ddpm": "ddpm", "ddim": "ddim", "dpm++": "dpm_solver++", "dpm_solver++": "dpm_solver++"}
#: the number of images when ``--num`` is not given
DEFAULT_NUM_IMAGES = 64


def output_target(out: str | None, ckpt_path: Path) -> tuple[Path, bool]:
    """Where the images go and whether as one grid: ``--out``, else a new ``eval/sample-<time>-<xxxx>/``
    folder of the checkpoint's run. An existing file or non-empty folder is one paragraph."""
    from lightning_gen.runs.layout import evaluation_dir

    if out is None:
        folder = ckpt_path.parent
        return evaluation_dir(folder.parent if folder.name == "checkpoints" else folder, "sample"), False
    target = Path(out)
    suffix = target.suffix.lower()
    if suffix in (".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"):
        raise ConfigError(
            f"`--out` {out} names a {suffix} file: a grid is written as PNG. Give a name ending in .png for one grid, "
            "or a folder (one PNG per image)."
        )
    is_grid = suffix == ".png"
    if target.is_file() or (target.exists() and (is_grid or not target.is_dir())):
        held = "a file"
    elif target.is_dir() and any(target.iterdir()):
        held = f"a folder holding {sum(1 for _ in target.iterdir())} entries"
    else:
        return target, is_grid
    raise ConfigError(
        f"`--out` {out} already exists ({held}), so these samples were not written over it. Pass a new `--out` "
        "(a folder to create, an empty folder, or a new name ending in .png), or move the earlier result away."
    )


def family_name(model: Any) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


def sample_conditioning(
    model: Any,
    ckpt: Path,
    num: int,
    labels: list[int] | None,
    guidance_scale: float | None,
    sampler: str | None,
    steps: int | None,
) -> dict[str, Any]:
    """The keyword arguments of ``model.sample`` for these flags; every request the model cannot honour is one paragraph."""
    import torch

    takes = set(inspect.signature(model.sample).parameters)
    family = family_name(model)
    if labels is not None:
        _check_labels(model, ckpt, family, "labels" in takes, num, labels)
    if guidance_scale is not None:
        _check_guidance(model, ckpt, family, "guidance_scale" in takes, guidance_scale)
    chosen = [flag for flag, value in (("--sampler", sampler), ("--steps", steps)) if value is not None]
    if chosen and not {"sampler", "steps"} <= takes:
        raise ConfigError(
            f"`{'` and `'.join(chosen)}` choose a diffusion model's denoising sampler; {ckpt} holds a {family}, which "
            f"draws each image in one pass. Drop `{'` and `'.join(chosen)}`."
        )
    if steps is not None and steps < 1:
        raise ConfigError(f"`--steps` must be >= 1, got {steps}.")
    kwargs: dict[str, Any] = {}
    if labels is not None:
        kwargs["labels"] = torch.tensor(labels, dtype=torch.long).repeat(-(-num // len(labels)))[:num]
    for name, value in (("guidance_scale", guidance_scale), ("steps", steps)):
        if value is not None:
            kwargs[name] = value
    if sampler is not None:
        kwargs["sampler"] = SAMPLERS[sampler]
    return kwargs


def _check_labels(model: Any, ckpt: Path, family: str, takes_labels: bool, num: int, labels: list[int]) -> None:
    """``--labels`` needs a conditional model, classes it was trained on, and at most ``--num`` of them."""
    if model.num_classes is None:
        how = "it was trained with `conditional: false`" if takes_labels else "this family has no class conditioning"
        raise ConfigError(
            f"`--labels` asks for classes, but {ckpt} holds an unconditional {family} ({how}), so it cannot be told "
            "which class to draw. Drop `--labels`, or sample a GAN or diffusion model trained with "
            "`model.init_args.conditional: true`."
        )
    bad = sorted({k for k in labels if not 0 <= k < model.num_classes})
    if bad:
        raise ConfigError(
            f"`--labels` {bad} out of range: {ckpt} was trained on {model.num_classes} classes, so labels go from 0 "
            f"to {model.num_classes - 1}."
        )
    if len(labels) > num:
        raise ConfigError(
            f"`--labels` gives {len(labels)} labels for {num} images (`--num`): give one label (for every image) or at "
            "most `--num` labels (repeated in turn to fill `--num`), or raise `--num`."
        )


def _check_guidance(model: Any, ckpt: Path, family: str, takes_guidance: bool, guidance_scale: float) -> None:
    """``--guidance_scale`` needs a conditional diffusion model and a scale >= 0."""
    if not takes_guidance:
        raise ConfigError(
            f"`--guidance_scale` sets classifier-free guidance, which only conditional diffusion models have; {ckpt} "
            f"holds a {family}. Drop `--guidance_scale` (and use `--labels` alone for a conditional GAN)."
        )
    if model.num_classes is None:
        raise ConfigError(
            f"`--guidance_scale` guides towards `--labels`, but {ckpt} holds an unconditional diffusion model "
            "(trained with `conditional: false`): there is nothing to guide. Drop `--guidance_scale`."
        )
    if guidance_scale < 0:
        raise ConfigError(
            f"`--guidance_scale` must be >= 0 (0 unconditional, 1 conditional, > 1 guided), got {guidance_scale}."
        )


def pil_image(array: Any) -> Any:
    """An ``(H, W, C)`` uint8 array (C = 1 or 3) as a grey or RGB PIL image."""
    from PIL import Image

    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def write_folder(images: Any, out: Path, labels: Any | None) -> None:
    """One PNG per image into ``out`` (created; an empty one is replaced), all at once: a temporary sibling renamed onto it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{out.name}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        for i, image in enumerate(images.permute(0, 2, 3, 1).numpy()):
            suffix = "" if labels is None else f"-label{int(labels[i])}"
            pil_image(image).save(tmp / f"{i:06d}{suffix}.png")
        try:
            os.rename(tmp, out)  # replaces an empty folder; fails on a folder another process filled meanwhile
        except OSError:
            raise ConfigError(
                f"`--out` {out} was filled by another process while sampling; these samples were not written over it."
            ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_grid(images: Any, out: Path, nrow: int | None) -> None:
    """All images as one grid PNG at ``out``, never over an existing file."""
    from gen_common.atomic import atomic_write
    from lightning_gen.loggers.images import to_uint8_grid

    grid = to_uint8_grid(images.float() / 255.0, **({} if nrow is None else {"nrow": nrow}))
    try:
        with atomic_write(out, "wb", exclusive=True) as f:
            pil_image(grid).save(f, format="PNG")
    except FileExistsError:
        raise ConfigError(f"`--out` {out} was written by another process while sampling; it was kept.") from None


def sample_images(args: Any, ckpt_path: Path, class_path: str) -> Path:
    """Load the image model, draw ``args.num_samples`` images with the flags' conditioning, write them; returns ``--out``."""
    from lightning_gen.commands.evaluate import EvaluateOptions, generated_images, load_model

    num = DEFAULT_NUM_IMAGES if args.num_samples is None else args.num_samples
    if num < 1 or args.sample_chunk < 1 or (args.nrow is not None and args.nrow < 1):
        raise ConfigError(
            f"`--num`, `--batch_size` and `--nrow` must be >= 1, got {num}, {args.sample_chunk} and {args.nrow}."
        )
    out, is_grid = output_target(args.out, ckpt_path)  # before loading: a refused --out costs nothing
    model = load_model(EvaluateOptions(ckpt=str(ckpt_path), model_class=class_path, device=args.device), {})
    if model.image_shape[0] not in (1, 3):
        raise ConfigError(f"{ckpt_path} makes {model.image_shape[0]}-channel images; PNGs hold 1 (grey) or 3 (RGB).")
    kwargs = sample_conditioning(model, ckpt_path, num, args.labels, args.guidance_scale, args.sampler, args.steps)
    labels = kwargs.pop("labels", None)
    if labels is None and model.num_classes is not None:  # the family's default, over all images: named in the files
        import torch

        labels = torch.arange(num) % model.num_classes
    images = generated_images(model, num, args.sample_chunk, args.seed, args.device, labels, **kwargs)
    if is_grid:
        write_grid(images, out, args.nrow)
        print(f"wrote a grid of {num} images to {out}")
    else:
        write_folder(images, out, labels)
        print(f"wrote {num} images to {out}/ (measure them: lightning-gen evaluate --fake {out} --real REAL_DIR)")
    return out
