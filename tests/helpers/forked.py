"""``lightning-gen ARGS`` in a process of its own, forked from a server that has already imported it.

A test that kills a run (kill -9, SIGTERM, Ctrl-C, a stuck batch) needs the run in another process,
but a new interpreter spends ~6 s importing torch, Lightning and ``lightning_gen`` before the first
step. :func:`fork_cli` forks the run instead from a :mod:`multiprocessing` fork server that imported
them once (started in the background by :func:`warm_up`), so each run starts in a fraction of a
second. The child is a real process with its own PID and session: it calls the entry point users run,
``lightning_gen.__main__.main(argv)``, from ``cwd`` with the environment of
:func:`tests.helpers.ops.cli_env`, writes to its own stdout/stderr files, runs the interpreter's exit
handlers (W&B closes its run) and exits with the status the interpreter would. Signals and kill -9
reach it as they reach ``python -m lightning_gen``. Not for DDP: Lightning starts the other ranks by
re-running ``sys.argv``, so DDP runs use :func:`tests.helpers.ops.run_cli`.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.forkserver
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

from tests.helpers.ops import cli_env, start_and_signal

#: what the server imports once: the entry point, the Trainer CLI, the families, W&B, this suite's FaultAt
PRELOAD = [
    "pytest",
    "lightning_gen.__main__",
    "lightning_gen.cli.trainer",
    "lightning_gen.models",
    "datamodules",
    "wandb",
    "tests.helpers.ops",
    __name__,
]


def _context() -> multiprocessing.context.ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def warm_up() -> None:
    """Start the fork server now: its imports run in the background while other tests run."""
    _context()
    saved = dict(os.environ)
    os.environ.update(cli_env())  # what the imports see (the server keeps it; each run sets its own)
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _exit_status(code: object) -> int:
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)  # sys.exit("message"): the interpreter prints it and exits 1
    return 1


def _child(args: list[str], cwd: str, env: dict[str, str], stdout: str, stderr: str) -> None:
    """The forked process: a fresh ``lightning-gen ARGS`` as far as the run can tell."""
    os.setsid()  # its own process group, as ``Popen(start_new_session=True)``: killpg reaches its children
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, path in ((1, stdout), (2, stderr)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(target, fd)
        os.close(target)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = ["lightning-gen"]
    from lightning_gen.__main__ import main

    interrupted = False
    try:
        main(args)
        code = 0
    except SystemExit as exit_:
        code = _exit_status(exit_.code)
    except KeyboardInterrupt:  # the interpreter prints it, then ends by SIGINT (status -2)
        traceback.print_exc()
        code, interrupted = 1, True
    except Exception:  # the interpreter prints an uncaught exception and exits 1
        traceback.print_exc()
        code = 1
    # the interpreter's exit: wait for non-daemon threads, run the exit handlers (W&B closes its run), flush
    threading._shutdown()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    if interrupted:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code)


class ForkedCLI:
    """A running ``lightning-gen ARGS``, with the part of :class:`subprocess.Popen` the tests use."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None, merge_stderr: bool = False):
        self.args = ["lightning-gen", *args]
        self._folder = Path(tempfile.mkdtemp(prefix="lightning-gen-forked-"))
        self._stdout = self._folder / "stdout"
        self._stderr = self._stdout if merge_stderr else self._folder / "stderr"
        self._process = _context().Process(
            target=_child, args=(list(args), str(cwd), env or cli_env(), str(self._stdout), str(self._stderr))
        )
        self._process.start()
        self.pid: int = self._process.pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and self._process.exitcode is not None:
            self.returncode = self._process.exitcode  # -N when signal N ended it, as Popen says
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self.poll() is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Wait for the exit; (stdout, stderr), stderr empty when merged into stdout."""
        self.wait(timeout)
        out = self._stdout.read_text() if self._stdout.exists() else ""
        err = "" if self._stderr == self._stdout or not self._stderr.exists() else self._stderr.read_text()
        shutil.rmtree(self._folder, ignore_errors=True)
        return out, err


def fork_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, merge_stderr: bool = False) -> ForkedCLI:
    """Start ``lightning-gen ARGS`` from ``cwd`` in a forked process (see the module docstring)."""
    return ForkedCLI(args, cwd, env, merge_stderr)


def run_forked(
    args: list[str], cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """:func:`tests.helpers.ops.run_cli`, forked: run to the end; exit status, stdout and stderr."""
    proc = fork_cli(args, cwd, env)
    try:
        out, err = proc.communicate(timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def fork_and_signal(
    args: list[str], cwd: Path, metrics_glob: str, at_step: int, sig: int, timeout: float = 300
) -> subprocess.CompletedProcess:
    """:func:`tests.helpers.ops.start_and_signal` (signal sent from outside once a row is on disk), forked."""
    return start_and_signal(
        args, cwd, metrics_glob, at_step, sig, timeout, start=lambda a, c: fork_cli(a, c, merge_stderr=True)
    )
