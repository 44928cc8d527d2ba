"""``init_from``: start a new run from another run's weights (pre-train, then fine-tune).

    lightning-gen fit --config experiments/gpt_shakespeare_char_finetune.yaml --init_from runs/.../last.ckpt

Any family: the checkpoint's ``state_dict`` (every parameter and buffer, EMA copies included) is
copied into the freshly built model after it is instantiated and before the Trainer, loggers or
run directory exist. It must fit exactly (same keys, same shapes), else one error paragraph and
nothing is written. The optimizer, LR schedule, step counters, RNG and callback states and the run
id stay behind: the new run gets its own id and directory and starts at step 0.

The saved ``config.yaml`` (and every logger's config) records the source: ``init_from`` (absolute
path) and ``init_from_sha256``; rerunning that config with a changed file is an error.

A datamodule that takes ``tokenizer_path`` (text) gets ``init_from`` there when it is unset: the
weights only make sense with the tokenizer they were trained with.

Resume wins: ``--ckpt_path last`` that finds a checkpoint continues that run (whose weights started
from ``init_from`` already), so a requeued job can always pass both; with no checkpoint yet the run
starts from ``init_from``. An explicit ``--ckpt_path FILE`` together with ``init_from`` is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from torch import Tensor

from gen_common.errors import ConfigError
from lightning_gen.metrics.inception import file_sha256
from lightning_gen.runs.checkpoints import CHECKPOINT_KEY, load_checkpoint_checked, state_dict_misfits

MAX_LISTED = 5  # offending keys named in a mismatch message
_note = rank_zero_only(print)  # one line on stdout, from the launching process only (DDP ranks re-run the CLI)


def add_init_from_arguments(parser: Any) -> None:
    """``--init_from`` and ``--init_from_sha256`` on a subcommand parser (``fit``, ``validate``, ...)."""
    parser.add_argument(
        "--init_from",
        type=str | None,
        default=None,
        help="Start from this checkpoint's weights only (no optimizer, step or run id): a new run, step 0.",
    )
    parser.add_argument(
        "--init_from_sha256",
        type=str | None,
        default=None,
        help="Expected SHA-256 of the init_from file; filled in the saved config.yaml to record the source.",
    )


@dataclass(frozen=True)
class InitSource:
    """A checked ``init_from`` checkpoint: its weights and where they came from."""

    path: Path
    sha256: str
    state_dict: dict[str, Tensor]
    model_class: str | None = None
    run_id: str | None = None
    global_step: int | None = None

    def apply(self, model: L.LightningModule, resuming_from: str | None = None) -> None:
        """:meth:`load_into`, unless the command resumes a checkpoint (its run started from these weights)."""
        if resuming_from:
            _note(f"lightning-gen: resuming {resuming_from}; `--init_from` only starts new runs, so it is not loaded.")
            return
        self.load_into(model)

    def load_into(self, model: L.LightningModule) -> None:
        """Copy the weights into ``model`` (all or nothing: a misfit raises before any copy)."""
        from lightning_gen.models.base import GenerativeModel

        state_dict = (
            model.upgrade_state_dict(dict(self.state_dict)) if isinstance(model, GenerativeModel) else self.state_dict
        )
        problems = state_dict_misfits(state_dict, model.state_dict(), model.strict_loading)
        if problems:
            held = f" (it holds a {self.model_class})" if self.model_class else ""
            shown = "; ".join(problems[:MAX_LISTED]) + (
                f"; and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
            )
            raise ConfigError(
                f"`--init_from` {self.path}{held} does not fit the model this config builds ({len(problems)} tensor(s) "
                f"differ: {shown}). Shapes follow from the `model:` settings and the values linked from the data "
                "(vocab_size, image_shape, num_classes): use the source run's settings (its config.yaml) and, for text, "
                "its tokenizer (`data.init_args.tokenizer_path`). Nothing was written."
            )
        model.load_state_dict(state_dict, strict=model.strict_loading)
        origin = ", ".join(
            x
            for x in (
                f"run {self.run_id}" if self.run_id else "",
                f"step {self.global_step}" if self.global_step is not None else "",
            )
            if x
        )
        _note(
            f"lightning-gen: weights from {self.path} ({origin + ', ' if origin else ''}sha256 {self.sha256[:12]}); "
            "optimizer, step and run id start fresh."
        )


def prepare_init_from(cfg: Any) -> InitSource | None:
    """Check the subcommand config's ``init_from`` before anything is built or written.

    Loads the checkpoint (memory-mapped), checks ``init_from_sha256``, records the absolute path
    and hash in ``cfg`` (so ``config.yaml`` names the source) and points an unset
    ``data.init_args.tokenizer_path`` at it. ``None`` when there is no ``init_from``.
    """
    source = cfg.get("init_from")
    if not source:
        return None
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path and str(ckpt_path) != "last":
        raise ConfigError(
            f"`--init_from` ({source}) and `--ckpt_path` ({ckpt_path}) both give a run's weights: `--ckpt_path` resumes "
            "that run (its weights, optimizer, step and run id), `--init_from` starts a new run from weights only. "
            "Drop one of them (`--init_from null` if it comes from a config file). Nothing was written."
        )
    path = Path(str(source)).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(
            f"`--init_from` {source} is not a file: pass a checkpoint of the source run, e.g. "
            "runs/<experiment>/<run id>/checkpoints/last.ckpt. Nothing was written."
        )
    sha256 = file_sha256(path)
    expected = cfg.get("init_from_sha256")
    if expected and expected.lower() != sha256:
        raise ConfigError(
            f"`--init_from` {path} has SHA-256 {sha256}, but `--init_from_sha256` expects {expected}: the file changed "
            "since this config was written. Pass the original file, or drop `--init_from_sha256` to start from this one. "
            "Nothing was written."
        )
    checkpoint = load_checkpoint_checked(path, flag="--init_from")
    if "state_dict" not in checkpoint:
        raise ConfigError(
            f"`--init_from` {path} is a sharded checkpoint folder; pass a single-file checkpoint. Nothing was written."
        )
    meta = checkpoint.get(CHECKPOINT_KEY) or {}
    cfg.init_from, cfg.init_from_sha256 = str(path), sha256
    data_args = (cfg.get("data") or {}).get("init_args") if cfg.get("data") is not None else None
    if data_args is not None and "tokenizer_path" in data_args and data_args.tokenizer_path is None:
        data_args.tokenizer_path = str(path)
    return InitSource(
        path,
        sha256,
        checkpoint["state_dict"],
        meta.get("model_class"),
        meta.get("run_id"),
        checkpoint.get("global_step"),
    )
