"""``lightning-gen ARGS`` in this process, returning what a subprocess would (exit status, stdout, stderr).

:func:`run_main` calls the entry point users run, ``lightning_gen.__main__.main(argv)``, with the
working directory and environment a subprocess of :func:`tests.helpers.ops.run_cli` gets (offline
W&B, no GPU, no ``LIGHTNING_GEN_*`` left over), and puts back what a command changes in its process:
the environment (a run exports its id for DDP children), the working directory, ``sys.argv``, torch's
deterministic-algorithms switch (``trainer.deterministic``), ``torch.save`` (``FaultAt("disk_full")``)
and the live W&B run. It saves the ~6 s a new interpreter spends importing torch and Lightning.
Subprocesses stay for what needs a process of its own: signals, kill -9, DDP, import isolation and
the console script.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from tests.helpers.ops import cli_env


@contextlib.contextmanager
def _process_state(cwd: Path, env: dict[str, str]) -> Iterator[None]:
    """Run the block as a fresh ``lightning-gen`` process would start: in ``cwd``, with ``env``; then restore."""
    saved_env, saved_cwd, saved_argv, saved_save = dict(os.environ), os.getcwd(), sys.argv, torch.save
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = ["lightning-gen"]  # LightningCLI warns when it sees pytest's own arguments there
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        torch.save = saved_save
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def _finish_wandb(exit_code: int) -> None:
    """End the command's W&B run, as the process exit would (Lightning's logger reuses a live run)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=exit_code)


def run_main(args: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``lightning-gen ARGS`` from ``cwd`` in this process: its exit status and what it printed."""
    from lightning_gen.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    with _process_state(Path(cwd), env if env is not None else cli_env()):
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
                code = 0
            except SystemExit as exit_:
                if exit_.code is None or isinstance(exit_.code, int):
                    code = exit_.code or 0
                else:  # sys.exit("message"): the interpreter prints it and exits 1
                    print(exit_.code, file=sys.stderr)
                    code = 1
            except Exception:  # a bug: the interpreter would print the traceback and exit 1
                traceback.print_exc()
                code = 1
            _finish_wandb(code)
    return subprocess.CompletedProcess(["lightning-gen", *args], code, out.getvalue(), err.getvalue())
