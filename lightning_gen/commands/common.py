"""What every command shares: fit's configuration (``--config`` and dotted overrides), devices, models, runs.

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
from typing import Any, Optional, Union

import lightning.pytorch as pl
import torch
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace
from lightning.pytorch.cli import LightningArgumentParser

from lightning_gen.checkpoints.loading import load_model
from lightning_gen.compat import parser_actions
from lightning_gen.config.settings import SETTINGS
from lightning_gen.console.option_errors import ExplainingParser
from lightning_gen.errors import UserError
from lightning_gen.runs.directory import RunLocation, read_run_info

__all__ = ["command_parser", "instantiate_datamodule", "load_model", "resolve_device", "run_directory_of"]


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


def batch_in_memory(args: Namespace) -> tuple[str, int | None]:
    """The command's option that sets how many images are in memory at once, and its value, for the
    out-of-memory sentence: ``--batch_size`` (evaluate, export, compare), else ``--num`` (sample), else the data's."""
    for key in ("batch_size", "num"):
        if isinstance(args.get(key), int):
            return f"--{key}", args[key]
    data = args.get("data")
    init_args = data.get("init_args") if data is not None and hasattr(data, "get") else None
    value = init_args.get("batch_size") if init_args is not None and hasattr(init_args, "get") else None
    return "--data.init_args.batch_size", value if isinstance(value, int) else None


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


def instantiate_datamodule(args: Namespace, required_for: str = "this command") -> pl.LightningDataModule:
    """The datamodule of ``args.data`` (from ``--config`` and ``--data.*`` overrides), as fit would build it."""
    data = args.get("data")
    if not data or not data.get("class_path"):
        raise UserError(
            f"{required_for} needs a dataset: pass --config with a run config that has a data section (e.g. "
            f"configs/quickstart.yaml) or --data.class_path."
        )
    parser = ArgumentParser()
    parser.add_subclass_arguments(pl.LightningDataModule, "data")
    return parser.instantiate_classes(parser.parse_object({"data": data.as_dict() if isinstance(data, Namespace) else data})).data


def resolve_device(device: Any) -> str:
    """``auto`` → cuda when a GPU is there, else cpu; accepts a parsed ``args`` with a ``device`` key."""
    if isinstance(device, Namespace):
        device = device.get("device", "auto")
    device = device or "auto"
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device} was asked but no CUDA GPU is visible; pass --device cpu or auto.")
    return str(device)


def run_directory_of(ckpt_path: str | Path) -> RunLocation | None:
    """The run a checkpoint belongs to (its directory must still exist), or None for a checkpoint on its own."""
    info = read_run_info(ckpt_path)
    directory = info.get("run_directory")
    if not directory or not info.get("run_id") or not Path(directory).is_dir():
        return None
    return RunLocation(
        Path(directory).parent.parent, info.get("experiment", Path(directory).parent.name), Path(directory), run_id=info["run_id"]
    )
