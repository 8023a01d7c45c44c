"""The datamodule a checkpoint was trained on, rebuilt from its run's saved ``config.yaml`` (or a given data section)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml
from lightning.pytorch.cli import instantiate_class

from lightning_gen.errors import UserError
from lightning_gen.latent.directions import run_directory_of_checkpoint


def data_section_of_run(ckpt_path: str | Path) -> dict[str, Any]:
    config_path = run_directory_of_checkpoint(ckpt_path) / "config.yaml"
    if not config_path.is_file():
        raise UserError(
            f"{config_path} does not exist, so the training data of {ckpt_path} is unknown; pass the training config with --config."
        )
    data = (yaml.safe_load(config_path.read_text()) or {}).get("data")
    if not data:
        raise UserError(f"{config_path} has no data section; pass the training config with --config.")
    return data


def instantiate_data(section: Mapping[str, Any]) -> Any:
    if "class_path" not in section:
        raise UserError("the data section names no class_path (e.g. lightning_gen.data.ShapesDataModule); fix the config.")
    return instantiate_class((), {"class_path": section["class_path"], "init_args": dict(section.get("init_args") or {})})


def training_batches(datamodule: Any):
    """A function giving the training batches in the datamodule's seeded order, without augmentation."""

    def batches():
        datamodule.prepare_data()
        datamodule.setup("fit")
        return iter(datamodule.train_dataloader())

    return batches
