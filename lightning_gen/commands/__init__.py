"""Commands beside LightningCLI's fit/validate/test/predict: ``python -m lightning_gen NAME --help``.

Each command is a module here with ``DESCRIPTION`` (one line for ``lightning-gen --help``),
``add_arguments(parser)`` and ``run(args)``; register it below, its module path in ``COMMANDS`` and its
``DESCRIPTION`` copied into ``DESCRIPTIONS``: ``--help`` lists the commands without importing any of them
(tests/test_cli_errors.py holds the copies equal). Every command parses fit's ``--config`` and dotted
overrides too (see ``common.command_parser``).
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

# Each command module's DESCRIPTION, for the command list of ``--help`` (importing every command would cost
# seconds: diffusers, torchmetrics' FID, gradio).
DESCRIPTIONS: dict[str, str] = {
    "sample": "write a grid of samples from a checkpoint (by class, attributes or prompt)",
    "stats": "per-class and per-attribute image counts of a config's dataset",
    "evaluate": "FID/KID/precision-recall, PSNR/SSIM distributions and judge accuracy of a checkpoint or an image folder",
    "mix": "blend two images through a checkpoint's latent space into a strip (and a GIF)",
    "edit": "add or remove an attribute (CelebA's Blond_Hair, a shape's colour) in an image through latent directions",
    "app": "serve the Kitten Mixer page (mix, edit, sample) for a checkpoint with Gradio",
    "compare": "a sweep's runs side by side: reconstruction/interpolation/sample grids, a metric table and plots",
    "sweep": "run a grid of config overrides one after another in one W&B group (skips finished runs, resumes interrupted ones)",
    "export": "write a generated dataset (ImageFolder + metadata.jsonl) from a checkpoint",
    "downstream": "train a classifier on real, real + synthetic and synthetic images; test on real",
    "publish": "write a checkpoint as a diffusers / huggingface_hub folder with a model card; optionally upload it",
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
