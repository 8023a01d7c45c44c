"""Commands beside LightningCLI's fit/validate/test/predict: ``python -m lightning_gen NAME --help``.

Each command is a module here with ``main(argv: list[str]) -> None``; register it below.
"""

COMMANDS: dict[str, str] = {
    "sample": "lightning_gen.commands.sample",
    "stats": "lightning_gen.commands.stats",
    "evaluate": "lightning_gen.commands.evaluate",
    "mix": "lightning_gen.commands.mix",
    "edit": "lightning_gen.commands.edit",
    "app": "lightning_gen.commands.app",
}
