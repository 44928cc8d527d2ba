"""A rank whose peers are gone (a node died, a process was killed): one paragraph instead of a traceback wall.

gloo says "Connection closed by peer [addr]:port" or "Connection reset by peer", NCCL aborts its communicator
or its watchdog times out, a peer that vanished without closing its sockets ends in the collective timeout,
and the c10d store stops answering. Every surviving rank then raises from deep inside a collective, and
torchrun adds its own report. What the user needs is which peer, where the newest checkpoint is, and how to
relaunch: :func:`lost_peer_paragraph` says it, :func:`report_lost_peer` raises it as a :class:`PeerLostError`
(printed by ``lightning-gen`` as one paragraph, exit status 1). Under torchrun with restarts left
(``scripts/torchrun.sh`` with ``MAX_RESTARTS``), the paragraph says instead that this node waits for the lost one
to rejoin, and the loss is recorded in torchrun's error file, from which ``lightning_gen.cli.torchrun`` knows that
a restart can help.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import os
import re
import shlex
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from gen_common.errors import LightningGenError
from lightning_gen.runs.layout import CHECKPOINT_DIR

#: the command that resumes this node, set by ``scripts/torchrun.sh`` and ``scripts/slurm.sbatch``
RELAUNCH_ENV = "LIGHTNING_GEN_RELAUNCH"
#: how long torchrun waits for a lost node to rejoin (seconds), set by ``scripts/torchrun.sh`` when restarts are on
REJOIN_TIMEOUT_ENV = "LIGHTNING_GEN_REJOIN_TIMEOUT_S"

_SIGNS = (
    "Connection closed by peer",
    "Connection reset by peer",
    "Connection refused",
    "Broken pipe",
    "NCCL communicator was aborted",
    "Watchdog caught collective operation timeout",
    "Timed out waiting",
    "failed to recv, got 0 bytes",
    "Socket Timeout",
)
_TIMEOUT_SIGNS = ("Timed out waiting", "Watchdog caught collective operation timeout", "Socket Timeout")
_PEER = re.compile(r"\[([^\]\s]+)\]:(\d+)")  # gloo's "[127.0.0.1]:60101"


class PeerLostError(LightningGenError):
    """This rank's peers are gone; the message is the paragraph to print."""


@dataclass(frozen=True)
class Ranks:
    """Where this process sits: its global rank, its node and how many nodes of how many ranks each."""

    rank: int = 0
    world: int = 1
    node: int = 0
    nodes: int = 1
    per_node: int = 1

    @classmethod
    def of(cls, trainer: object | None) -> Ranks:
        """From a Trainer (no collective: these are the strategy's attributes), else from torchrun's environment."""
        if trainer is not None:
            try:
                return cls(
                    trainer.global_rank,  # type: ignore[attr-defined]
                    trainer.world_size,  # type: ignore[attr-defined]
                    trainer.node_rank,  # type: ignore[attr-defined]
                    trainer.num_nodes,  # type: ignore[attr-defined]
                    trainer.num_devices,  # type: ignore[attr-defined]
                )
            except (AttributeError, TypeError):
                pass
        env = os.environ
        per_node = int(env.get("LOCAL_WORLD_SIZE", "1"))
        return cls(
            int(env.get("RANK", "0")),
            int(env.get("WORLD_SIZE", "1")),
            int(env.get("GROUP_RANK", "0")),
            int(env.get("GROUP_WORLD_SIZE", "1")),
            per_node,
        )

    def ranks_of(self, node: int) -> str:
        """``rank 3`` or ``ranks 4-7``: the global ranks of ``node``."""
        first = node * self.per_node
        return f"rank {first}" if self.per_node == 1 else f"ranks {first}-{first + self.per_node - 1}"


def lost_peer(err: BaseException) -> str | None:
    """The line that says a collective lost its peers, from ``err`` or the exceptions it chains; else ``None``."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, RuntimeError):  # torch.distributed's errors; not an OSError from a closed stdout
            for line in str(current).splitlines():
                if any(sign in line for sign in _SIGNS):
                    line = re.sub(r"^\[[^\]]*\.cc:\d+\]\s*", "", line.strip())  # gloo's source location
                    return re.sub(r"\.\s+This is typically caused by.*$", ".", line)  # gloo's advice, its emoji
        current = current.__cause__ or current.__context__
    return None


def _who_was_lost(reason: str, ranks: Ranks) -> str:
    """The node (and host) this rank lost, as far as the error and the layout of the run tell."""
    if any(sign in reason for sign in _TIMEOUT_SIGNS):
        return (
            "a peer that stopped answering (no message within the collective timeout, `--run.collective_timeout_min`)"
        )
    match = _PEER.search(reason)
    host = f" at {match.group(1)}" if match else ""
    if ranks.nodes == 2:
        other = 1 - ranks.node
        return f"node {other} ({ranks.ranks_of(other)}{host}{', the master' if other == 0 else ''})"
    if ranks.nodes == 1 and ranks.world == 2:
        return f"rank {1 - ranks.rank}{host}"
    return f"a peer{host}" if host else "a peer"


def _checkpoint_sentence(run_dir: Path) -> str:
    last = (run_dir / CHECKPOINT_DIR / "last.ckpt").absolute()
    if not last.exists():
        return f"No checkpoint was saved yet ({last} does not exist): the relaunch starts the run over."
    saved = dt.datetime.fromtimestamp(last.stat().st_mtime)
    ago = int((dt.datetime.now() - saved).total_seconds())
    return f"The newest checkpoint is {last} (saved {saved:%H:%M:%S}, {ago} s ago): the training since then is lost."


def relaunch_command(argv: list[str], run_id: str | None) -> str:
    """This node's command with ``--ckpt_path last``: the launcher's (``RELAUNCH_ENV``), else ``lightning-gen ARGV``."""
    given = os.environ.get(RELAUNCH_ENV)
    if given:
        return given
    command: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--ckpt_path":
            skip = True
        elif not arg.startswith("--ckpt_path="):
            command.append(arg)
    prefix = f"LIGHTNING_GEN_RUN_ID={shlex.quote(run_id)} " if run_id else ""
    return prefix + shlex.join(["lightning-gen", *command, "--ckpt_path", "last"])


@dataclass(frozen=True)
class Restart:
    """torchrun restarts this node's processes after this failure: restart ``number`` of ``most``."""

    number: int
    most: int
    rejoin_timeout_s: int | None = None

    @classmethod
    def pending(cls) -> Restart | None:
        """From torchrun's environment (``TORCHELASTIC_RESTART_COUNT`` < ``TORCHELASTIC_MAX_RESTARTS``), else ``None``."""
        env = os.environ
        try:
            done, most = int(env["TORCHELASTIC_RESTART_COUNT"]), int(env["TORCHELASTIC_MAX_RESTARTS"])
        except (KeyError, ValueError):
            return None
        timeout = env.get(REJOIN_TIMEOUT_ENV, "")
        return cls(done + 1, most, int(timeout) if timeout.isdigit() else None) if done < most else None

    def sentence(self, relaunch: str, run_dir: Path) -> str:
        """What happens next: the wait for the lost node, how to bring it back, what to do if it does not come."""
        within = f" up to {self.rejoin_timeout_s} s" if self.rejoin_timeout_s is not None else ""
        return (
            f"torchrun restarts this node's processes (restart {self.number} of {self.most}) and waits{within} for "
            f"the lost node to rejoin: start that node again with its own command, this node's but for its "
            f"NODE_RANK (this node: `{relaunch}`), and the run continues in {run_dir.absolute()} from that "
            "checkpoint. If it does not come back in time, or it was the rendezvous host (MASTER_ADDR), this node "
            "stops too: then relaunch every node with that command."
        )


def lost_peer_paragraph(
    reason: str, run_dir: Path, ranks: Ranks, relaunch: str, host: str | None = None, restart: Restart | None = None
) -> str:
    """Which rank lost whom and why, the newest checkpoint and the command that resumes (or, with ``restart``, the
    wait for the lost node to rejoin)."""
    where = f"node {ranks.node} of {ranks.nodes}, " if ranks.nodes > 1 else ""
    head = (
        f"rank {ranks.rank} ({where}host {host or socket.gethostname()}) lost {_who_was_lost(reason, ranks)}: "
        f"{reason} That node or one of its processes died (killed, out of memory, preempted) or the network to it "
        "failed"
    )
    if restart is not None:
        return f"{head}. {_checkpoint_sentence(run_dir)} {restart.sentence(relaunch, run_dir)}"
    return (
        f"{head}, so this node stopped too. {_checkpoint_sentence(run_dir)} To resume, relaunch every node with the "
        f"same run id and `--ckpt_path last` (each with its own NODE_RANK); this node: `{relaunch}`. The run "
        f"continues in {run_dir.absolute()}."
    )


def record_for_launcher(err: PeerLostError) -> None:
    """Write ``err`` to torchrun's error file for this process (``TORCHELASTIC_ERROR_FILE``), where the agent
    reads it: ``lightning_gen.cli.torchrun`` restarts a node's processes only after such a loss (or a kill)."""
    if not os.environ.get("TORCHELASTIC_ERROR_FILE"):
        return
    from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

    ErrorHandler().record_exception(err)


def report_lost_peer(err: BaseException, run_dir: Path | None, ranks: Ranks) -> None:
    """Raise :class:`PeerLostError` if ``err`` is a lost peer of a multi-process run (else return).

    Only local rank 0 prints it, once per node; the node's other ranks exit with status 1 quietly. Every rank
    records it for torchrun (:func:`record_for_launcher`).
    """
    reason = lost_peer(err)
    if reason is None or run_dir is None or ranks.world < 2:
        return
    relaunch = relaunch_command(sys.argv[1:], run_dir.name)
    lost = PeerLostError(lost_peer_paragraph(reason, run_dir, ranks, relaunch, restart=Restart.pending()))
    record_for_launcher(lost)
    if os.environ.get("LOCAL_RANK", "0") != "0":
        raise SystemExit(1)
    raise lost from None


def die_with_launcher() -> None:
    """Under torchrun, end this worker when its agent ends (``kill -9`` of torchrun is the loss of the node).

    torchrun starts each worker in a session of its own, so a killed agent would leave it training alone.
    """
    if "TORCHELASTIC_RUN_ID" not in os.environ or not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the agent died before prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)
