"""A datamodule from a config's data section (``{class_path, init_args}``), built as ``fit`` builds it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
from jsonargparse import ArgumentParser, Namespace

from lightning_gen.errors import UserError


def datamodule_from_config(data: Any, where: str) -> pl.LightningDataModule:
    """``data`` as a config holds it (dict or Namespace; a datamodule is returned as it is); ``where`` names its file."""
    if isinstance(data, pl.LightningDataModule):
        return data
    section = data.as_dict() if isinstance(data, Namespace) else data
    if not isinstance(section, Mapping) or not section.get("class_path"):
        raise UserError(f"the data section of {where} names no class_path (e.g. lightning_gen.data.ShapesDataModule); fix the config.")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(pl.LightningDataModule, "data", required=True)
    try:
        return parser.instantiate_classes(parser.parse_object({"data": dict(section)})).data
    except UserError:
        raise
    except Exception as error:
        raise UserError(
            f"the data section of {where} could not be built ({str(error).splitlines()[0]}); fix its data.class_path / init_args."
        ) from error


def instantiate_datamodule(args: Namespace, required_for: str = "this command") -> pl.LightningDataModule:
    """The datamodule of ``args.data`` (from ``--config`` and ``--data.*`` overrides), as fit would build it."""
    data = args.get("data")
    if not data or not data.get("class_path"):
        raise UserError(
            f"{required_for} needs a dataset: pass --config with a run config that has a data section (e.g. "
            f"configs/quickstart.yaml) or --data.class_path."
        )
    return datamodule_from_config(data, "--config/--data")
