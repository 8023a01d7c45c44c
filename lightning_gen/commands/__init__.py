"""Commands beside LightningCLI's fit/validate/test/predict: ``python -m lightning_gen NAME --help``.

Each command is a module here with ``DESCRIPTION`` (one line for ``lightning-gen --help``),
``add_arguments(parser)`` and ``run(args)``; register it below. Every command parses fit's
``--config`` and dotted overrides too (see ``common.command_parser``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

COMMANDS: dict[str, str] = {
    "sample": "lightning_gen.commands.sample",
    "stats": "lightning_gen.commands.stats",
    "evaluate": "lightning_gen.commands.evaluate",
    "mix": "lightning_gen.commands.mix",
    "edit": "lightning_gen.commands.edit",
    "app": "lightning_gen.commands.app",
    "compare": "lightning_gen.commands.compare",
    "sweep": "lightning_gen.commands.sweep",
    "export": "lightning_gen.commands.export",
    "downstream": "lightning_gen.commands.downstream",
    "publish": "lightning_gen.commands.publish",
}


def command_module(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name])


def run_command(name: str, argv: list[str]) -> None:
    module = command_module(name)
    if not hasattr(module, "run"):  # a command not yet moved to the shared parser
        module.main(argv)
        return
    from lightning_gen.commands.common import command_parser, write_hint
    from lightning_gen.console.option_errors import explained_resource_errors
    from lightning_gen.inference.memory import batch_in_memory

    args = command_parser(name, module).parse_args(argv)
    # Out of memory, or a folder that cannot be written: one sentence with the size tried / the path, not a traceback.
    with explained_resource_errors(lambda: batch_in_memory(args), lambda path: write_hint(args, path)):
        module.run(args)
