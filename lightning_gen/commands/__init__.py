"""Tool commands of ``lightning-gen`` beside the Trainer ones (fit/validate/test/predict).

Each entry maps a command name to a module with ``main(argv: list[str]) -> None``; the module
is imported only when its command runs. Add a line here when you add a command module.
"""
from __future__ import annotations

TOOL_COMMANDS: dict[str, str] = {
    "sample": "lightning_gen.commands.sample",
    "sweep": "lightning_gen.commands.sweep",
    "compare": "lightning_gen.commands.compare",
    "export": "lightning_gen.commands.export",
    "evaluate": "lightning_gen.commands.evaluate",
}
