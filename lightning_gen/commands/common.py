"""What every command shares: fit's configuration (``--config`` and dotted overrides) and where a write failed.

Loading models, devices, conditions, sampling options and datamodules are the library's
(``lightning_gen.inference``, ``lightning_gen.runs``): commands only parse options and call it.

A command module defines ``DESCRIPTION``, ``add_arguments(parser)`` (its own options) and
``run(args)``. ``command_parser`` adds, after the command's own options, the same ``--config`` and
groups as ``fit`` (``trainer``, ``model``, ``data``, ``tracking``, ``checkpointing``, ``ema``,
``images``, ``seed_everything``, ``ckpt_path``), all optional, so a run's config or its saved
``config.yaml`` can be passed to any command and overridden exactly as for ``fit``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from types import ModuleType
from typing import Optional, Union

import lightning.pytorch as pl
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace
from lightning.pytorch.cli import LightningArgumentParser

from lightning_gen.compat import parser_actions
from lightning_gen.config.settings import SETTINGS
from lightning_gen.console.option_errors import ExplainingParser

__all__ = ["add_fit_arguments", "command_parser", "write_hint"]


def _defined(parser: ArgumentParser, key: str) -> bool:
    return any(action.dest == key or action.dest.startswith(f"{key}.") for action in parser_actions(parser))


def add_fit_arguments(parser: LightningArgumentParser) -> None:
    """fit's configuration groups, each optional; keys the command already defined are left to it."""
    if not _defined(parser, "config"):
        parser.add_argument("-c", "--config", action=ActionConfigFile, help="a run config (configs/*.yaml or a run's config.yaml)")
    if not _defined(parser, "seed_everything"):
        parser.add_argument("--seed_everything", type=Union[bool, int], default=True, help="fit's seed (read from configs)")
    if not _defined(parser, "ckpt_path"):
        parser.add_argument("--ckpt_path", type=Optional[str], default=None, help="a .ckpt file of a lightning_gen run")
    if not _defined(parser, "weights_only"):  # fit's own key in a saved config.yaml; commands always load weights only
        parser.add_argument("--weights_only", type=Optional[bool], default=None, help=argparse.SUPPRESS)
    if not _defined(parser, "trainer"):
        parser.add_lightning_class_args(pl.Trainer, "trainer")
    if not _defined(parser, "model"):
        parser.add_subclass_arguments(pl.LightningModule, "model", required=False, fail_untyped=False)
    if not _defined(parser, "data"):
        parser.add_subclass_arguments(pl.LightningDataModule, "data", required=False, fail_untyped=False)
    for key, settings in SETTINGS.items():
        if not _defined(parser, key):
            parser.add_argument(f"--{key}", type=settings, default=settings())


def command_parser(name: str, module: ModuleType) -> LightningArgumentParser:
    # Raises ParseFailure instead of printing the whole usage: main() explains a mistake in one sentence.
    # No abbreviated options (--nu is not taken as --num); --help: the command's own options, fit's groups one line each.
    parser = ExplainingParser(
        prog=f"lightning-gen {name}", description=getattr(module, "DESCRIPTION", None), allow_abbrev=False, short_help=True
    )
    module.add_arguments(parser)
    add_fit_arguments(parser)
    return parser


def write_hint(args: Namespace, path: Path) -> str | None:
    """What to do about ``path`` that cannot be written: the option that chose it, or the checkpoint's run
    directory; None for a path the command was not told to write (a dataset file it reads)."""
    path = Path(path).absolute()
    # The command's own options (--out, --save_images, --cache_dir, ...): the path lies in one's, or is a folder on
    # the way to one written with a folder in it (--out /file/grid.png, /file a regular file).
    chosen = {
        key: Path(value).expanduser().absolute()
        for key, value in args.items()
        if "." not in key and key != "ckpt_path" and isinstance(value, str) and value
    }
    for key, folder in chosen.items():
        if path == folder or folder in path.parents:
            return f"choose a writable --{key}"
    for key, folder in chosen.items():
        if os.sep in str(args[key]) and path in folder.parents:
            return f"choose a writable --{key}"
    ckpt_path = args.get("ckpt_path")
    run = Path(ckpt_path).absolute().parent.parent if isinstance(ckpt_path, str) else None
    if run is not None and (path == run or run in path.parents):
        if "log_to_run" in args:
            return (
                f"the checkpoint's run directory {run} is not writable: pass --log_to_run false (with --out "
                f"FILE for the scores) or make it writable"
            )
        return f"it lies in the checkpoint's run directory {run}: make that writable or copy the run somewhere writable"
    return None
