"""One writer per run directory: ``<run dir>/.lock``, held by the process that trains the run.

Two ``fit`` processes on one run id would interleave ``metrics.csv`` and overwrite each other's
checkpoints. The lock is an ``fcntl.flock`` on ``<run dir>/.lock``; the file holds the holder's
PID, host, start time and command, for the message a second writer gets. The kernel drops a flock
when its process dies (also on kill -9), so a lock left by a killed process is simply taken over
(the file is still there, its holder is not). The file is deleted on release; a process that
flocked a file another one just deleted sees a different inode and tries again.

Under DDP only the launching global-rank-0 process takes the lock (:func:`gen_common.ranks.launching_rank_zero`):
the ranks it starts write into the same run and hold no lock of their own.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from gen_common.errors import LightningGenError

LOCK_NAME = ".lock"


class RunLockedError(LightningGenError):
    """Another live process holds the run directory."""


def _start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (``/proc/<pid>/stat`` field 22); tells PID reuse apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def holder_alive(holder: dict[str, Any]) -> bool | None:
    """Whether the process recorded in a lock file still runs; ``None`` when it ran on another host."""
    if holder.get("host") != socket.gethostname():
        return None
    pid = int(holder.get("pid", -1))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    recorded, now = holder.get("start_ticks"), _start_ticks(pid)
    return recorded is None or now is None or recorded == now


def _read_holder(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


class RunLock:
    """An acquired lock on a run directory; :meth:`release` (also run at exit) deletes it.

    Attributes:
        path: The lock file.
        previous: What the lock file said when it was taken over from a dead process (else ``{}``).
    """

    def __init__(self, path: Path, fd: int, previous: dict[str, Any]) -> None:
        self.path, self._fd, self.previous = path, fd, previous
        atexit.register(self.release)

    def release(self) -> None:
        """Delete the lock file, then drop the lock (in that order: see the module docstring)."""
        if self._fd is None:
            return
        try:
            if os.path.exists(self.path) and os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None


def _message(run_dir: Path, path: Path, holder: dict[str, Any], alive: bool | None) -> str:
    pid, host = holder.get("pid", "?"), holder.get("host", "?")
    what = f"PID {pid} on host {host} ({holder.get('command', 'lightning-gen')}, started {holder.get('started', '?')})"
    if alive is None:
        stop = f"wait for it to finish or stop it on {host}; if that process no longer exists, delete {path}"
    elif alive:
        stop = f"wait for it to finish or stop it (`kill {pid}`: it saves last.ckpt)"
    else:
        stop = f"PID {pid} has exited but a process it started still holds the lock: wait a few seconds or stop that process"
    return (
        f"Run dir {run_dir} is being written by another process: {what} holds {path}. Two writers would "
        f"interleave metrics.csv and overwrite each other's checkpoints, so this process stopped. Nothing was written. "
        f"To continue this run, {stop}, then run your command again with `--ckpt_path last`; "
        "to train alongside it, give this process another `--run.id`."
    )


def acquire_run_lock(
    run_dir: str | os.PathLike, command: str | None = None, wait_s: float = 0.0, dead_holder_grace_s: float = 10.0
) -> RunLock:
    """Take ``<run_dir>/.lock`` or raise :class:`RunLockedError` naming the holder.

    ``wait_s``: how long to wait for a live holder to finish (a retried sweep trial whose killed
    predecessor is still saving its checkpoint). A lock whose recorded PID is dead but which is
    still flocked (DataLoader workers forked from the killed process live a few seconds longer)
    is waited for up to ``dead_holder_grace_s``.
    """
    run_dir = Path(run_dir)
    path = run_dir / LOCK_NAME
    start = time.monotonic()
    deadline = start + dead_holder_grace_s
    waiting = False
    while True:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _read_holder(path)
            alive = holder_alive(holder) if holder else True
            if (alive is False and time.monotonic() < deadline) or time.monotonic() - start < wait_s:
                if alive and not waiting:
                    print(
                        f"lightning-gen: {run_dir} is held by PID {holder.get('pid')}; waiting up to {wait_s:g} s for it to finish."
                    )
                    waiting = True
                time.sleep(0.2)
                continue
            raise RunLockedError(_message(run_dir, path, holder, alive)) from None
        except OSError as err:  # a file system without flock (some network mounts): PID check only
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                os.close(fd)
                raise
            holder = _read_holder(path)
            alive = holder_alive(holder) if holder else False
            if alive is not False:
                os.close(fd)
                raise RunLockedError(_message(run_dir, path, holder, alive)) from None
        try:
            same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same_file = False
        if not same_file:  # the previous holder deleted it between our open and flock
            os.close(fd)
            continue
        break
    previous = _read_holder(path)
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "start_ticks": _start_ticks(os.getpid()),
        "command": command or " ".join(["lightning-gen", *sys.argv[1:3]]),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    return RunLock(path, fd, previous)
