"""Build the logger a run asked for, inside its run directory."""

from __future__ import annotations

import netrc
import os
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger

from lightning_gen.run_dir import RunLocation
from lightning_gen.settings import TrackingSettings


def wandb_credentials_present() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_offline(settings: TrackingSettings) -> bool:
    if settings.wandb_mode != "auto":
        return settings.wandb_mode == "offline"
    if os.environ.get("WANDB_MODE") in {"offline", "disabled", "dryrun"}:
        return True
    return not wandb_credentials_present()


def make_logger(settings: TrackingSettings, run: RunLocation) -> Logger | bool:
    run.directory.mkdir(parents=True, exist_ok=True)
    if settings.logger == "none":
        return False
    if settings.logger == "csv":
        return CSVLogger(save_dir=str(run.directory), name="", version="")
    if settings.logger == "tensorboard":
        return TensorBoardLogger(save_dir=str(run.directory), name="", version="", default_hp_metric=False)
    offline = wandb_offline(settings)
    # save_dir keeps W&B's files inside the run directory (a mounted drive on Colab).
    return WandbLogger(
        save_dir=str(run.directory),
        project=settings.project,
        group=settings.group or run.experiment,
        name=f"{run.experiment}/{run.directory.name}",
        id=run.run_id,
        resume="allow",
        offline=offline,
        log_model=False,
    )


def wandb_files(run_directory: Path) -> list[Path]:
    return sorted((run_directory / "wandb").glob("*run-*"))
