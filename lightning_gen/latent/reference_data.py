"""The datamodule a checkpoint was trained on, rebuilt from its run's saved ``config.yaml`` (or a given data section).

The run's config (``<run>/config.yaml``, or the ``config.yaml`` in the folder of a checkpoint outside
``checkpoints/``) may come from someone else: it is read as data and checked against lightning_gen's
allow-list (``lightning_gen.config.trust``) before its data section is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning_gen.config.trust import trusted_config
from lightning_gen.errors import UserError
from lightning_gen.inference.datamodules import datamodule_from_config
from lightning_gen.runs.lookup import run_directory_of_checkpoint


def data_section_of_run(ckpt_path: str | Path) -> dict[str, Any]:
    config_path = run_directory_of_checkpoint(ckpt_path) / "config.yaml"
    if not config_path.is_file():
        raise UserError(
            f"{config_path} does not exist, so the training data of {ckpt_path} is unknown; pass the training config with --config."
        )
    data = trusted_config(config_path).get("data")
    if not data:
        raise UserError(f"{config_path} has no data section; pass the training config with --config.")
    return data


def check_run_config(ckpt_path: str | Path) -> None:
    """Refuses (one sentence) a run config of ``ckpt_path`` naming a class outside the allow-list; none there is fine."""
    config_path = run_directory_of_checkpoint(ckpt_path) / "config.yaml"
    if config_path.is_file():
        trusted_config(config_path, "remove it, or if you wrote that file yourself and trust it, move it away from the checkpoint")


def instantiate_data(section: Mapping[str, Any], where: str = "the run's config") -> Any:
    """Builds a data section: one from a run via ``data_section_of_run`` (checked), or the user's own ``--config``/``--data``."""
    return datamodule_from_config(section, where)


def training_batches(datamodule: Any):
    """A function giving the training batches in the datamodule's seeded order, without augmentation."""

    def batches():
        datamodule.prepare_data()
        datamodule.setup("fit")
        return iter(datamodule.train_dataloader())

    return batches
