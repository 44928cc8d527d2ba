"""``lightning-gen fit --help``: the options a user sets, in one screen, without importing Lightning.

LightningCLI's own help lists every Trainer argument (about 590 lines, 6-10 s to import Lightning);
it stays one flag away (``--help-all``), as does one class's (``--model.help CLASS``).
"""

from __future__ import annotations

import dataclasses
import inspect

from lightning_gen.runs.options import RunOptions

COMMON_TRAINER = (
    "max_epochs, max_steps, max_time, accelerator (cpu/gpu/auto), devices, num_nodes, strategy (ddp, fsdp), "
    "precision (32-true, bf16-mixed, 16-mixed), limit_train_batches, val_check_interval, accumulate_grad_batches, "
    "gradient_clip_val, callbacks, log_every_n_steps"
)


def field_docs(cls: type) -> dict[str, str]:
    """``{field: its text}`` from the ``Args:`` section of a dataclass's docstring (continuation lines joined)."""
    docs: dict[str, str] = {}
    names = {f.name for f in dataclasses.fields(cls)}
    current = None
    for line in inspect.getdoc(cls).split("Args:", 1)[-1].splitlines():
        head, _, text = line.strip().partition(":")
        if head in names and line.startswith("    ") and not line.startswith("        "):
            current, docs[head] = head, text.strip()
        elif current and line.strip():
            docs[current] += " " + line.strip()
    return docs


def short_help(command: str) -> str:
    """The one-screen help of a Trainer command (``fit``, ``validate``, ``test``, ``predict``)."""
    run_docs = field_docs(RunOptions)
    defaults = {f.name: f.default for f in dataclasses.fields(RunOptions) if f.default is not dataclasses.MISSING}
    run_lines = [
        f"  --run.{name}  ({defaults.get(name, [])!r})  {text.replace('``', '`')}" for name, text in run_docs.items()
    ]
    resume = "continue a run (`last` or a checkpoint file)" if command == "fit" else "the checkpoint to evaluate"
    return "\n".join(
        [
            f"usage: lightning-gen {command} --config EXPERIMENT.yaml [--config LAYER.yaml ...] [--SECTION.KEY=VALUE ...]",
            "",
            "  --config FILE          an experiment (experiments/*.yaml); later files and flags override earlier ones",
            "  --model.init_args.KEY  the model's settings (`--model.help CLASS` lists a class's, e.g. lightning_gen.models.VAE)",
            "  --data.init_args.KEY   the datamodule's settings (`--data.help CLASS`)",
            f"  --trainer.KEY          Lightning Trainer settings: {COMMON_TRAINER}",
            f"  --ckpt_path PATH       {resume}",
            "  --init_from CKPT       start a new run from these weights only (fit)",
            "  --seed_everything N    the run's seed (default 0)",
            "  --print_config         print the resolved config and exit",
            "",
            "The run (`run:` section; where it writes, its loggers, its safety nets):",
            *run_lines,
            "",
            f"Every option, with types and defaults (about 590 lines; imports Lightning): lightning-gen {command} --help-all",
        ]
    )
