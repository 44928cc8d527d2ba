"""Resume (``fit --ckpt_path last`` or a path): find the checkpoint, check it, continue its run.

:func:`resolve_resume` finds the checkpoint, checks it (readable, same model class) before
anything is written, and returns the run it belongs to (stored in the checkpoint by
:class:`~lightning_gen.runs.run_state.RunState`), so the resumed run writes into the same
directory, CSV history and W&B run. :func:`check_checkpoint_fits` and :func:`check_resume_trains`
refuse, in one paragraph, a checkpoint the config's model cannot load or that would train 0 steps.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from gen_common.atomic import atomic_write
from gen_common.errors import LightningGenError
from lightning_gen.runs.checkpoints import CHECKPOINT_KEY, load_checkpoint_checked, state_dict_misfits
from lightning_gen.runs.layout import find_last_checkpoint, run_directory
from lightning_gen.runs.options import RunOptions
from lightning_gen.utils.trees import flatten


@dataclass
class Resume:
    """A checkpoint to continue from and the run it belongs to.

    Attributes:
        ckpt_path: The checkpoint file.
        run_id: Its run id (directory name and W&B id), or ``None`` for a foreign checkpoint.
        log_step: Logger step stored at save time; rows logged after it are dropped on resume.
    """

    ckpt_path: Path
    run_id: str | None
    log_step: int | None = None
    checkpoint: dict[str, Any] | None = field(default=None, repr=False)  # the loaded file, for the checks below


def resolve_resume(ckpt_path: str, options: RunOptions, name: str, model_class_path: str | None) -> Resume | None:
    """Turn ``--ckpt_path`` (``last`` or a file) into a checked :class:`Resume`.

    ``last`` with no checkpoint yet returns ``None`` (a fresh run; convenient for requeued jobs
    that always pass ``--ckpt_path last``).
    """
    if ckpt_path == "last":
        path = find_last_checkpoint(options, name)
        if path is None:
            where = run_directory(options, name, options.id) if options.id else Path(options.root, name)
            print(f"lightning-gen: no last.ckpt under {where}; starting a new run.")
            return None
    else:
        path = Path(ckpt_path)
    checkpoint = load_checkpoint_checked(path, model_class_path)
    meta = checkpoint.get(CHECKPOINT_KEY) or {}  # (a sharded checkpoint's folder resumes as the folder)
    return Resume(ckpt_path=path, run_id=meta.get("run_id"), log_step=meta.get("log_step"), checkpoint=checkpoint)


def run_config_file(resume: Resume) -> Path | None:
    """The ``config.yaml`` of the run a checkpoint belongs to (beside its ``checkpoints/``, or its recorded run dir)."""
    meta = (resume.checkpoint or {}).get(CHECKPOINT_KEY) or {}
    candidates = [resume.ckpt_path.parent.parent / "config.yaml"]
    if meta.get("run_dir"):
        candidates.append(Path(meta["run_dir"]) / "config.yaml")
    return next((p for p in candidates if p.is_file()), None)


def _run_config_hint(resume: Resume) -> str:
    found = run_config_file(resume)
    return f"`--config {found}`" if found else "the run's config.yaml"


#: data settings a resume may change: how batches are loaded and where the files are, not what they hold
RESUME_MAY_CHANGE = tuple(
    f"data.init_args.{key}"
    for key in ("num_workers", "persistent_workers", "pin_memory", "prefetch_factor", "data_dir", "root", "download")
)


def resume_config_changes(saved: Mapping[str, Any], given: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, saved value, given value)`` for every ``model``/``data`` setting that differs (flat keys).

    A resumed run restores its weights, optimizer and schedule state from the checkpoint, so a changed
    model, optimizer, scheduler, loss or batch setting would be recorded but not used.
    """
    old, new = flatten(_plain(saved)), flatten(_plain(given))
    keys = sorted(k for k in old.keys() | new.keys() if k.split(".")[0] in ("model", "data"))
    return [
        (k, old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k) and not k.startswith(RESUME_MAY_CHANGE)
    ]


def _plain(tree: Any) -> Any:
    return json.loads(json.dumps(tree, default=str))


def check_resume_config(resume: Resume, given: Mapping[str, Any]) -> None:
    """Refuse, in one paragraph that lists old -> new, a resume whose ``model``/``data`` settings differ from the run's."""
    config_file = run_config_file(resume)
    if config_file is None:
        return  # a foreign checkpoint: no record to contradict
    saved = yaml.safe_load(config_file.read_text()) or {}
    changes = resume_config_changes(saved, given)
    if not changes:
        return
    listed = "; ".join(f"`{k}` {old!r} -> {new!r}" for k, old, new in changes[:6])
    more = f"; and {len(changes) - 6} more" if len(changes) > 6 else ""
    raise LightningGenError(
        f"Resuming {resume.ckpt_path} with settings that differ from its run's {config_file}: {listed}{more}. "
        "A resume restores the weights, optimizer and schedule state from the checkpoint, so these changes would be "
        "recorded without being used. Nothing was written. To continue the run, drop the changed flags; to train "
        f"with the new settings, start a new run from these weights: `--init_from {resume.ckpt_path}` instead of "
        "`--ckpt_path` (with another `--run.id`, or none)."
    )


def keep_config_history(run_dir: Path, resume: Resume) -> Path | None:
    """Copy the run's ``config.yaml`` to ``history/config-at-step-<N>.yaml`` before a resume rewrites it."""
    current = run_dir / "config.yaml"
    if not current.is_file():
        return None
    step = (resume.checkpoint or {}).get("global_step", "unknown")
    history = run_dir / "history"
    history.mkdir(exist_ok=True)
    target, n = history / f"config-at-step-{step}.yaml", 1
    while target.exists():
        n += 1
        target = history / f"config-at-step-{step}-{n}.yaml"
    with atomic_write(target, "w") as f:
        f.write(current.read_text())
    return target


def check_checkpoint_fits(model: Any, resume: Resume) -> None:
    """Raise one paragraph when the checkpoint's weights cannot load into ``model`` (before anything is written).

    Compares parameter names and shapes of ``model.state_dict()`` (as the config built it) with
    the checkpoint's ``state_dict``, as Lightning's strict load would, but up front.
    """
    saved = (resume.checkpoint or {}).get("state_dict")
    if not isinstance(saved, dict) or not isinstance(model, torch.nn.Module):
        return  # a sharded checkpoint (metadata only) is checked by the strategy that loads it
    problems = state_dict_misfits(saved, model.state_dict(), getattr(model, "strict_loading", True))
    if not problems:
        return
    shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
    raise LightningGenError(
        f"Checkpoint {resume.ckpt_path} does not fit the model this config builds ({len(problems)} parameter(s) differ: {shown}). "
        f"Nothing was written. Use the configuration it was trained with ({_run_config_hint(resume)}, without "
        "overriding model sizes), or start a new run with this model: drop `--ckpt_path` (and give it its own `--run.id`)."
    )


def check_resume_trains(resume: Resume, max_epochs: int | None, max_steps: int, max_time: Any = None) -> None:
    """Raise one paragraph when resuming ``resume`` would train 0 steps (a limit is already reached).

    Mirrors Lightning's ``FitLoop.done`` on the restored loop state: ``max_steps`` against the
    checkpoint's ``global_step``, ``max_epochs`` (Lightning's default: 1000 when neither limit
    is set) against its processed epochs.
    """
    checkpoint = resume.checkpoint or {}
    try:
        epochs_done = int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
        step = int(checkpoint["global_step"])
    except (KeyError, TypeError, ValueError):
        return  # not a Lightning fit checkpoint: nothing to tell in advance
    if max_epochs is None:
        max_epochs = 1000 if max_steps == -1 and max_time is None else -1
    reached = []
    if max_steps != -1 and step >= max_steps:
        reached.append(f"`max_steps={max_steps}` (the checkpoint is at step {step}): raise `--trainer.max_steps`")
    if max_epochs != -1 and epochs_done >= max_epochs:
        fix = "raise `--trainer.max_epochs`"
        if max_steps != -1 and step < max_steps:
            fix += " (or set `--trainer.max_epochs=-1` so that `max_steps` alone decides)"
        reached.append(f"`max_epochs={max_epochs}` ({epochs_done} epoch(s) done): {fix}")
    if reached:
        raise LightningGenError(
            f"Resuming from {resume.ckpt_path} would train 0 steps: the run has already reached "
            f"{' and '.join(reached)}. Nothing was written. Run the same command with the higher limit to "
            "continue training, or `lightning-gen test`/`validate` to evaluate the checkpoint."
        )
