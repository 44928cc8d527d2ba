"""``python -m lightning_gen.cli.torchrun``: torchrun (``torch.distributed.run``) with a one-line failure report.

torchrun reports a failed rank with a logged error, a traceback of its own and a ``ChildFailedError`` box,
under the rank's message. A rank of ``lightning-gen`` already said why in one paragraph (a lost node, bad input),
so here the launcher says only which ranks ended and how. Everything else is torchrun's own ``run``.
"""

from __future__ import annotations

import logging
import sys


def main(argv: list[str] | None = None) -> None:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.run import parse_args, run

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # the failure is reported below
    try:
        run(parse_args(sys.argv[1:] if argv is None else argv))
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
        print(f"torchrun: the nodes of this run lost each other ({type(err).__name__}: {err}).", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
