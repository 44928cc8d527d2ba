"""``--format diffusers``: a diffusion model as a diffusers folder.

Unconditional models: ``DDPMPipeline(unet, scheduler).save_pretrained(out)``, so::

    pipe = diffusers.DDPMPipeline.from_pretrained(out)
    images = pipe(n, generator=torch.Generator().manual_seed(0), num_inference_steps=STEPS, output_type="pt").images

gives the images of our ``DenoisingDiffusion.sample(n, generator=...)`` (same seed, the model's default
sampler and ``STEPS``, which the marker file records: diffusers' pipeline defaults to 1000 steps).
The scheduler saved is the model's default sampler (``DDPMScheduler``, ``DDIMScheduler`` or
``DPMSolverMultistepScheduler``), configured as ours. DDPMPipeline passes no ``eta``: a DDIM
sampler with ``eta > 0`` is sampled as ``eta = 0`` by it (the export says so).

Class-conditional models: ``unet/`` and ``scheduler/`` only (``UNet2DModel.from_pretrained(out,
subfolder="unet")``, the scheduler class's ``from_pretrained(out, subfolder="scheduler")``), since
DDPMPipeline passes no labels. The UNet embeds ``num_classes + 1`` labels, the last (``null_label``
in the marker) meaning "no label"; classifier-free guidance is ``uncond + scale * (cond - uncond)``.
"""

from __future__ import annotations

from pathlib import Path

from lightning_gen.exporters import ExportResult
from lightning_gen.exporters.source import MARKER, ExportSource, staged_folder, write_json


def write_diffusers(source: ExportSource, out_path: Path, force: bool) -> ExportResult:
    from diffusers import DDPMPipeline
    from diffusers.utils import logging as diffusers_logging

    net = source.build()  # lightning_gen.nets.diffusion.DenoisingDiffusion, weights checked
    cfg = net.sampling
    scheduler = net.make_scheduler(cfg.sampler, cfg.steps, cfg.clip_sample)
    conditional = net.num_classes is not None
    info = source.info(
        "diffusers",
        pipeline=None if conditional else "DDPMPipeline",
        scheduler=type(scheduler).__name__,
        sampler=cfg.sampler,
        num_inference_steps=cfg.steps,
        eta=cfg.eta,
        num_classes=net.num_classes,
        null_label=net.num_classes,
        guidance_scale=cfg.guidance_scale if conditional else None,
    )
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # no progress or "saving" lines on the command's output
    try:
        with staged_folder(out_path, force) as tmp:
            if conditional:
                net.net.save_pretrained(str(tmp / "unet"), safe_serialization=True)
                scheduler.save_pretrained(str(tmp / "scheduler"))
            else:
                DDPMPipeline(unet=net.net, scheduler=scheduler).save_pretrained(str(tmp), safe_serialization=True)
            write_json(tmp / MARKER, info)
    finally:
        diffusers_logging.set_verbosity(verbosity)
    what = "EMA weights" if source.ema else "weights"
    if conditional:
        how = (
            f"a class-conditional UNet (unet/, {net.num_classes} classes + null label {net.num_classes}) and its "
            f"{type(scheduler).__name__} (scheduler/); DDPMPipeline passes no labels, so there is no pipeline"
        )
    else:
        how = f"DDPMPipeline.from_pretrained reads it; sample with num_inference_steps={cfg.steps} as this model does"
    note = ""
    if cfg.sampler == "ddim" and cfg.eta > 0:
        note = f"; note: the model samples DDIM with eta={cfg.eta}, DDPMPipeline with eta=0"
    return ExportResult(out_path, f"exported the diffusion {what} to {out_path} ({how}){note}")
