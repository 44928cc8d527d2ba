"""Entry point of ``lightning-gen`` (and ``python -m lightning_gen``): one command table, one dispatch.

Each command is a module with ``main(argv)``, imported only when its command runs, so
``lightning-gen --help`` and the tool commands never import Lightning; the Trainer commands
(``fit``, ``validate``, ``test``, ``predict``) run LightningCLI (:mod:`lightning_gen.cli.trainer`).
Bad input (a :class:`~gen_common.errors.UserError`, also wrapped by jsonargparse) prints as one
paragraph and exits with status 1, whichever command raised it.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from typing import NamedTuple


class Command(NamedTuple):
    """A command: the module whose ``main(argv)`` runs it, and its line in ``--help``."""

    module: str
    help: str
    trainer: bool = False  # a LightningCLI subcommand: its ``main`` also gets the command name


TRAINER = "lightning_gen.cli.trainer"

#: every command of ``lightning-gen``; add a line here when you add a command module
COMMANDS: dict[str, Command] = {
    "fit": Command(TRAINER, "train a model (e.g. `lightning-gen fit --config experiments/vae_mnist.yaml`)", True),
    "validate": Command(TRAINER, "evaluate a checkpoint on the validation split (a sub-run of the trained run)", True),
    "test": Command(TRAINER, "evaluate a checkpoint on the test split (a sub-run of the trained run)", True),
    "predict": Command(TRAINER, "run the model's predict step on a checkpoint", True),
    "evaluate": Command(
        "lightning_gen.commands.evaluate", "FID/KID/PR/IS and classifier metrics of a checkpoint or an image folder"
    ),
    "sample": Command(
        "lightning_gen.commands.sample", "text (--prompt) or PNG images (--num, --out) from a checkpoint"
    ),
    "export": Command(
        "lightning_gen.commands.export", "write a checkpoint's (EMA) sampling network alone, loadable without Lightning"
    ),
    "compare": Command(
        "lightning_gen.commands.compare", "table and PNG of runs' metrics and differing config (run dirs or --sweep)"
    ),
    "sweep": Command("lightning_gen.commands.sweep", "run a W&B-format sweep file with W&B agents or Optuna"),
    "prepare": Command(
        "lightning_gen.commands.prepare", "write LitData shards (images or tokens) to a folder or s3://"
    ),
}


def usage() -> str:
    """The top-level help: every command, without importing any of them."""
    width = max(map(len, COMMANDS))
    trainer = [f"  {name:<{width}}  {cmd.help}" for name, cmd in COMMANDS.items() if cmd.trainer]
    tools = [f"  {name:<{width}}  {cmd.help}" for name, cmd in COMMANDS.items() if not cmd.trainer]
    return "\n".join(
        [
            "usage: lightning-gen COMMAND [options]   (`lightning-gen COMMAND --help` lists a command's options)",
            "",
            "Trainer commands (LightningCLI: --config FILE, --trainer.*, --model.*, --data.*, --run.*):",
            *trainer,
            "",
            "Tool commands:",
            *tools,
        ]
    )


def unknown_command(name: str) -> str:
    """One paragraph for a command that does not exist: the closest one and all of them."""
    close = difflib.get_close_matches(name, COMMANDS, n=1)
    hint = f" Did you mean `{close[0]}`?" if close else ""
    return (
        f"`{name}` is not a command.{hint} The commands are: {', '.join(COMMANDS)} "
        "(`lightning-gen --help` says what each does)."
    )


def exit_on_user_error(err: BaseException) -> None:
    """Bad input (a :class:`UserError`, also wrapped by jsonargparse): one paragraph, exit 1; anything else re-raises."""
    from gen_common.errors import user_error_in

    user_error = user_error_in(err)
    if user_error is None:
        raise err
    print(f"lightning-gen: error: {user_error}", file=sys.stderr)
    sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    """Run ``lightning-gen ARGV`` (``sys.argv[1:]`` by default); tests call this in process."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        if not argv:
            sys.exit(2)
        return
    name, rest = argv[0], argv[1:]
    command = COMMANDS.get(name)
    if command is None and name.startswith("-"):  # LightningCLI's own top-level flags (`--print_config` ...)
        name, rest, command = "", argv, COMMANDS["fit"]
    if command is None:
        print(f"lightning-gen: error: {unknown_command(name)}", file=sys.stderr)
        sys.exit(2)
    if command.trainer and rest in (["--help"], ["-h"]):  # one screen, no Lightning import
        from lightning_gen.cli.short_help import short_help

        print(short_help(name))
        return
    if command.trainer:
        rest = ["--help" if arg == "--help-all" else arg for arg in rest]  # LightningCLI's full help
    try:
        module = importlib.import_module(command.module)
        module.main([name, *rest] if command.trainer and name else rest)
    except Exception as err:  # noqa: BLE001 - a user error prints as one paragraph; a bug re-raises
        exit_on_user_error(err)


if __name__ == "__main__":
    main()
