"""The real data to compare against: the command's ``--config``/``--data``, else the checkpoint's run's saved config.

Built by ``lightning_gen.inference.datamodules.datamodule_from_config`` (re-exported here for the metrics).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from lightning_gen.config.trust import read_config, trusted_config
from lightning_gen.errors import UserError
from lightning_gen.inference.datamodules import datamodule_from_config

__all__ = ["data_section", "datamodule_from_config", "reference_datamodule"]


def data_section(args: Any) -> Any:
    data = args.get("data") if hasattr(args, "get") else None
    if data is not None and (getattr(data, "class_path", None) or (isinstance(data, dict) and data.get("class_path"))):
        return data
    config = args.get("config") if hasattr(args, "get") else None
    files = config if isinstance(config, list) else [config] if config else []
    for file in files:
        path = Path(str(getattr(file, "absolute", file)))
        if path.is_file():
            section = read_config(path).get("data")  # the user's own --config (one in a run directory was checked by cli.main)
            if section:
                return section
    return None


def reference_datamodule(args: Any, run_directory: Path | None) -> pl.LightningDataModule:
    section = data_section(args)
    if section is not None:
        return datamodule_from_config(section, "--config/--data")
    if run_directory is not None:
        section = trusted_config(run_directory / "config.yaml").get("data")
        if section:
            return datamodule_from_config(section, str(run_directory / "config.yaml"))
    raise UserError("no real data to compare against; pass --config with a data section (or --data.class_path ...), or --reference DIR.")
