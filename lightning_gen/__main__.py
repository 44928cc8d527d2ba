"""Entry point of ``lightning-gen`` (and ``python -m lightning_gen``): dispatch before importing Lightning.

``lightning-gen --help`` and the tool commands (``compare``, ``sweep``, ``evaluate``, ``sample``,
``export``; their ``--help`` too) never import Lightning here; only the Trainer commands
(``fit``, ``validate``, ``test``, ``predict``) load :mod:`lightning_gen.cli`, which does.
"""
from __future__ import annotations

import importlib
import sys

from lightning_gen.commands import TOOL_COMMANDS

#: the LightningCLI subcommands, run by :mod:`lightning_gen.cli`
TRAINER_COMMANDS = {
    "fit": "train a model (e.g. `lightning-gen fit --config experiments/vae_mnist.yaml`)",
    "validate": "evaluate a checkpoint on the validation split (a sub-run of the trained run)",
    "test": "evaluate a checkpoint on the test split (a sub-run of the trained run)",
    "predict": "run the model's predict step on a checkpoint",
}


def usage() -> str:
    """The top-level help: every command, without importing any of them."""
    from lightning_gen.commands import TOOL_HELP

    width = max(map(len, [*TRAINER_COMMANDS, *TOOL_COMMANDS]))
    lines = [
        "usage: lightning-gen COMMAND [options]   (`lightning-gen COMMAND --help` lists a command's options)",
        "",
        "Trainer commands (LightningCLI: --config FILE, --trainer.*, --model.*, --data.*, --run.*):",
        *(f"  {name:<{width}}  {text}" for name, text in TRAINER_COMMANDS.items()),
        "",
        "Tool commands:",
        *(f"  {name:<{width}}  {TOOL_HELP.get(name, '')}" for name in TOOL_COMMANDS),
    ]
    return "\n".join(lines)


def run_tool(name: str, argv: list[str]) -> None:
    """Run tool command ``name``; a user error prints as one paragraph and exits with status 1."""
    try:
        importlib.import_module(TOOL_COMMANDS[name]).main(argv)
    except Exception as err:
        exit_on_user_error(err)


def exit_on_user_error(err: BaseException) -> None:
    """Bad input (a :class:`UserError`, also wrapped by jsonargparse): one paragraph, exit 1; anything else re-raises."""
    from lightning_gen.errors import user_error_in

    user_error = user_error_in(err)
    if user_error is None:
        raise err
    print(f"lightning-gen: error: {user_error}", file=sys.stderr)
    sys.exit(1)


def main(args: list[str] | None = None) -> None:
    """Console entry point: help and tool commands stay light; Trainer commands go to LightningCLI."""
    argv = sys.argv[1:] if args is None else list(args)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        if not argv:
            sys.exit(2)
        return
    if argv[0] in TOOL_COMMANDS:
        run_tool(argv[0], argv[1:])
        return
    from lightning_gen.cli import main as lightning_main

    lightning_main(args)


if __name__ == "__main__":
    main()
