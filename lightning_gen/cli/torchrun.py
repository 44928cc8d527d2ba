"""``python -m lightning_gen.cli.torchrun``: torchrun (``torch.distributed.run``) with a one-line failure report.

torchrun reports a failed rank with a logged error, a traceback of its own and a ``ChildFailedError`` box,
under the rank's message. A rank of ``lightning-gen`` already said why in one paragraph (a lost node, bad input),
so here the launcher says only which ranks ended and how. Everything else is torchrun's own ``run``.

With ``--max-restarts`` (``scripts/torchrun.sh``: ``MAX_RESTARTS``), torchrun's agent restarts a node's processes
whenever one fails. Here it restarts them only when a restart can help: each failed process lost its peers (it
recorded a ``PeerLostError``, ``lightning_gen.runs.lost_peer``) or was killed by a signal. Bad input or a bug
would fail the same way again, so its one paragraph is printed once and the node stops.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any

from lightning_gen.runs.lost_peer import RELAUNCH_ENV, PeerLostError

#: how a worker's error record names a lost peer: ``ErrorHandler.record_exception`` writes "<class>: <message>"
LOST_PEER_RECORD = f"{PeerLostError.__name__}: "


def restart_helps(failure: Any) -> bool:
    """Whether a restart can continue after this failed process (a ``ProcessFailure``): it lost its peers or was
    killed by a signal (another node died, the OOM killer, kill -9), not bad input or a bug."""
    message = failure.message.get("message", "") if isinstance(failure.message, dict) else failure.message
    return failure.exitcode < 0 or str(message).startswith(LOST_PEER_RECORD)


def restart_only_when_it_helps() -> None:
    """Make torchrun's agent (``LocalElasticAgent``, as ``torch.distributed.launcher.api`` builds it) spend no
    restart on a failure that a restart would repeat: it then stops at once, as with ``--max-restarts 0``.

    Relies on the agent's ``_monitor_workers`` and ``_remaining_restarts`` (torch 2.14); without them torchrun
    restarts on any failure, as it does by itself.
    """
    from torch.distributed.launcher import api as launcher

    base = launcher.LocalElasticAgent
    if not hasattr(base, "_monitor_workers") or getattr(base, "restarts_only_when_they_help", False):
        return

    class Agent(base):  # type: ignore[misc, valid-type]
        restarts_only_when_they_help = True

        def _monitor_workers(self, worker_group: Any) -> Any:
            result = super()._monitor_workers(worker_group)
            if result.is_failed() and not all(map(restart_helps, result.failures.values())):
                self._remaining_restarts = 0
            return result

    launcher.LocalElasticAgent = Agent


def rendezvous_failure(err: BaseException, join_timeout_s: str, endpoint: str) -> str:
    """The agent's line when the nodes could not (re)form the run, with this node's relaunch command if known."""
    from torch.distributed.elastic.rendezvous.api import (
        RendezvousClosedError,
        RendezvousConnectionError,
        RendezvousTimeoutError,
    )

    if isinstance(err, RendezvousTimeoutError):
        why = f"not every node of this run joined within the rendezvous timeout ({join_timeout_s} s)"
    elif isinstance(err, RendezvousClosedError):
        why = "another node ended this run (its own console says why)"
    elif isinstance(err, RendezvousConnectionError):
        why = (
            f"the rendezvous store at {endpoint}, kept by the torchrun of the rendezvous host (NODE_RANK=0 with "
            "scripts/torchrun.sh), is gone or unreachable"
        )
    else:
        why = f"the nodes of this run lost each other ({type(err).__name__}: {err})"
    relaunch = os.environ.get(RELAUNCH_ENV)
    then = (
        f" To resume, relaunch every node with the same run id and `--ckpt_path last`; this node: `{relaunch}`."
        if relaunch
        else ""
    )
    return f"torchrun: {why}; this node stopped.{then}"


def join_timeout(rdzv_conf: str) -> str:
    """``join_timeout`` of ``--rdzv-conf`` (torch's default: 600)."""
    found = re.search(r"(?:^|,)\s*join_timeout\s*=\s*(\d+)", rdzv_conf or "")
    return found.group(1) if found else "600"


def import_torch_quietly() -> None:
    """Import torch with its C++ warnings off in this launcher: when the rendezvous host dies, c10d's store client
    warns ("recvVector failed", "sendBytes failed") with 20 stack frames each, under the one line said below. The
    level is read once, as torch loads, and the variable is unset again, so the workers keep their warnings."""
    given = os.environ.get("TORCH_CPP_LOG_LEVEL")
    if given is None:
        os.environ["TORCH_CPP_LOG_LEVEL"] = "ERROR"
    try:
        import torch  # noqa: F401
    finally:
        if given is None:
            del os.environ["TORCH_CPP_LOG_LEVEL"]


def main(argv: list[str] | None = None) -> None:
    import_torch_quietly()
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.run import parse_args, run

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # the failure is reported below
    args = parse_args(sys.argv[1:] if argv is None else argv)
    restart_only_when_it_helps()
    try:
        run(args)
    except ChildFailedError as err:
        codes = {rank: failure.exitcode for rank, failure in err.failures.items()}
        ranks = ", ".join(
            f"rank {rank}: {'signal ' + str(-c) if c < 0 else 'status ' + str(c)}" for rank, c in codes.items()
        )
        print(f"torchrun: this node's processes ended ({ranks}); their own messages are above.", file=sys.stderr)
        sys.exit(next((c for c in codes.values() if c > 0), 1))
    except SignalException as err:  # Ctrl-C, SIGTERM: torchrun already stopped this node's processes
        print(f"torchrun: stopped by {err.sigval.name}; this node's processes were ended.", file=sys.stderr)
        sys.exit(128 + int(err.sigval))
    except RendezvousError as err:
        timeout, endpoint = join_timeout(getattr(args, "rdzv_conf", "")), getattr(args, "rdzv_endpoint", "")
        print(rendezvous_failure(err, timeout, endpoint), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
