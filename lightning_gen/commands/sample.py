"""``lightning-gen sample``: text from a language model, PNGs from an image model (VAE, GAN, diffusion).

    lightning-gen sample --ckpt runs/gpt_shakespeare_char/<id>/checkpoints/last.ckpt --prompt "ROMEO:"
    lightning-gen sample --ckpt runs/ddpm_mnist/<id>/checkpoints/last.ckpt --num 64 --out grid.png
    lightning-gen sample --ckpt runs/ddpm_mnist_cfg/<id>/checkpoints/last.ckpt --labels 0 1 2 --guidance_scale 3 \\
        --sampler dpm++ --steps 20 --num 1000 --out samples/

The checkpoint names its model class (else its run's ``config.yaml`` does). Text: the tokenizer comes
from the checkpoint (the text datamodule stores it there), or from ``--tokenizer PATH`` (a
``tokenizer.json``); sampling defaults: :class:`~lightning_gen.utils.sampling.SamplingOptions`.
Images: :mod:`lightning_gen.commands.sample_images`. A flag of the other kind of model is one paragraph.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from gen_common.errors import ConfigError, LightningGenError
from lightning_gen.metrics.settings import EvalSettings
from lightning_gen.utils.options import parse_options
from lightning_gen.utils.sampling import SamplingOptions


@dataclass
class SampleOptions:
    """Generate text from a language-model checkpoint, or PNG images from an image-model checkpoint.

    Args:
        ckpt: Checkpoint of a lightning_gen model (e.g. ``.../checkpoints/last.ckpt``).
        num_samples: Text continuations printed (default 1), or images drawn (default 64; also ``--num``).
        seed: Seed of the sampling noise.
        device: cpu, cuda, cuda:1 ...
        prompt: Text to continue (default: a newline). Text models.
        max_new_tokens: Tokens generated after the prompt. Text models.
        temperature: Softmax temperature; 0 = greedy. Text models.
        top_k: Sample among the ``k`` likeliest tokens only (null: all). Text models.
        top_p: Nucleus sampling probability mass (null: off). Text models.
        tokenizer: ``tokenizer.json`` to use instead of the checkpoint's. Text models.
        out: A folder (one PNG per image; new or empty) or a new ``.png`` file (one grid); default: a new
            ``eval/sample-<time>-<xxxx>/`` folder of the checkpoint's run. Image models.
        labels: Classes of a conditional model: one for every image, or several repeated in turn
            (default: ``0, 1, ..., K-1, 0, ...``). Image models.
        guidance_scale: Classifier-free guidance of a conditional diffusion model: 0 unconditional,
            1 conditional, > 1 guided (default: the model's ``sampling`` config).
        sampler: Diffusion sampler: ddpm, ddim or dpm++ (default: the model's ``sampling`` config).
        steps: Diffusion denoising steps (default: the model's ``sampling`` config).
        sample_chunk: Images per ``sample`` call (also ``--batch_size``); chunk ``c`` draws its noise
            from ``(seed, c)``, as ``evaluate --ckpt`` does. Image models.
        nrow: Images per row of a grid (default: the run's sample grids'). Image models.
    """

    ckpt: str
    num_samples: int | None = None
    seed: int = 0
    device: str = "cpu"
    prompt: str = "\n"
    max_new_tokens: int = SamplingOptions.max_new_tokens
    temperature: float = SamplingOptions.temperature
    top_k: int | None = SamplingOptions.top_k
    top_p: float | None = SamplingOptions.top_p
    tokenizer: str | None = None
    out: str | None = None
    labels: list[int] | None = None
    guidance_scale: float | None = None
    sampler: Literal["ddpm", "ddim", "dpm++", "dpm_solver++"] | None = None
    steps: int | None = None
    sample_chunk: int = EvalSettings.sample_chunk
    nrow: int | None = None


#: flags only a text model takes, and only an image model takes (the rest: both)
TEXT_FLAGS = ("prompt", "max_new_tokens", "temperature", "top_k", "top_p", "tokenizer")
IMAGE_FLAGS = ("out", "labels", "guidance_scale", "sampler", "steps", "sample_chunk", "nrow")
#: spellings of the command line -> fields
ALIASES = {"--num": "--num_samples", "--batch_size": "--sample_chunk"}
#: text continuations when ``--num_samples`` is not given (images: ``sample_images.DEFAULT_NUM_IMAGES``)
DEFAULT_NUM_TEXTS = 1


def refuse_flags_of_the_other_kind(args: SampleOptions, kind: str, ckpt_path: Path, class_path: str) -> None:
    """One paragraph when flags of the other kind of model (``kind``: "text" or "image") were given."""
    defaults = {f.name: f.default for f in dataclasses.fields(SampleOptions)}
    names = IMAGE_FLAGS if kind == "text" else TEXT_FLAGS
    given = [f"--{n}" for n in names if getattr(args, n) != defaults[n]]
    if given:
        other = "image" if kind == "text" else "text"
        raise ConfigError(
            f"{ckpt_path} holds a {class_path}, {'an' if kind == 'image' else 'a'} {kind} model, but `{'`, `'.join(given)}` "
            f"{'is a flag' if len(given) == 1 else 'are flags'} of {other} models. Drop "
            f"{'it' if len(given) == 1 else 'them'} (`lightning-gen sample --help` marks each flag's kind)."
        )


def tokenizer_for(checkpoint: dict[str, Any], ckpt_path: Path, override: str | None = None) -> Any:
    """The tokenizer a run trained with: ``override``, else the one in the checkpoint, else its run dir's ``tokenizer.json``."""
    from datamodules.text.datamodule import tokenizer_in_checkpoint
    from datamodules.text.tokenizers import Tokenizer

    if override:
        return Tokenizer.load(override)
    tokenizer = tokenizer_in_checkpoint(checkpoint)
    if tokenizer is not None:
        return tokenizer
    for candidate in (ckpt_path.parent / "tokenizer.json", ckpt_path.parent.parent / "tokenizer.json"):
        if candidate.is_file():
            return Tokenizer.load(candidate)
    raise LightningGenError(
        f"{ckpt_path} holds no tokenizer (it was not trained with datamodules.text.TextDataModule): "
        "pass `--tokenizer PATH/tokenizer.json`."
    )


def model_class_of(checkpoint: dict[str, Any], ckpt_path: Path) -> str:
    """The checkpoint's model class path (its run metadata, else its run's ``config.yaml``); "" when unknown."""
    from lightning_gen.runs.checkpoints import CHECKPOINT_KEY

    class_path = (checkpoint.get(CHECKPOINT_KEY) or {}).get("model_class") or ""
    config = ckpt_path.resolve().parent.parent / "config.yaml"
    if not class_path and config.is_file():
        class_path = ((yaml.safe_load(config.read_text()) or {}).get("model") or {}).get("class_path") or ""
    return class_path


def is_image_model(class_path: str) -> bool:
    """Whether ``class_path`` names an :class:`~lightning_gen.models.base.ImageGenerator` ("" : no, the text path)."""
    if not class_path:
        return False
    from lightning_gen.models.base import ImageGenerator
    from lightning_gen.utils.imports import import_object

    cls = import_object(class_path, "model class")
    return isinstance(cls, type) and issubclass(cls, ImageGenerator)


def main(argv: list[str]) -> None:
    args = parse_options(
        SampleOptions,
        argv,
        "lightning-gen sample",
        aliases=ALIASES,
        epilog="--num is --num_samples, --batch_size is --sample_chunk.",
    )
    import torch

    from lightning_gen.models.gpt import GPT
    from lightning_gen.runs.checkpoints import load_checkpoint_checked

    ckpt_path = Path(args.ckpt)
    if not ckpt_path.is_file():
        raise LightningGenError(f"No checkpoint at {ckpt_path}; runs keep theirs in runs/<name>/<id>/checkpoints/.")
    checkpoint = load_checkpoint_checked(ckpt_path, flag="--ckpt")  # truncated or corrupt: one paragraph
    class_path = model_class_of(checkpoint, ckpt_path)
    if is_image_model(class_path):
        from lightning_gen.commands.sample_images import sample_images

        refuse_flags_of_the_other_kind(args, "image", ckpt_path, class_path)
        del checkpoint  # the model loads it again
        sample_images(args, ckpt_path, class_path)
        return
    refuse_flags_of_the_other_kind(args, "text", ckpt_path, class_path or "language model")
    num_samples = DEFAULT_NUM_TEXTS if args.num_samples is None else args.num_samples
    if args.max_new_tokens < 0 or num_samples < 1:
        raise ConfigError("`--max_new_tokens` must be >= 0 and `--num_samples` >= 1.")
    tokenizer = tokenizer_for(checkpoint, ckpt_path, args.tokenizer)
    try:
        model = GPT.load_from_checkpoint(ckpt_path, map_location=args.device)
    except (KeyError, TypeError, RuntimeError) as err:
        raise LightningGenError(f"{ckpt_path} is not a lightning_gen.models.GPT checkpoint ({err}).") from None
    model.eval()
    prompt = torch.tensor(tokenizer.encode(args.prompt), dtype=torch.long)
    if prompt.numel() == 0:
        raise ConfigError("`--prompt` encodes to no tokens; give at least one character.")
    generator = torch.Generator(device="cpu").manual_seed(args.seed)
    out = model.generate(
        prompt.expand(num_samples, -1),
        args.max_new_tokens,
        args.temperature,
        args.top_k,
        args.top_p,
        generator=generator,
    )
    for i, row in enumerate(out.tolist()):
        if num_samples > 1:
            print(f"--- sample {i} ---")
        print(tokenizer.decode(row))
