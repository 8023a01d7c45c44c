"""``python -m lightning_gen fit|validate|test|predict --config X.yaml`` (LightningCLI) and the extra commands.

The CLI adds what every run needs without the user listing it: a run directory named after the
experiment, a logger inside it, checkpoints (last, best-k, periodic), EMA, image grids and the
state needed to resume a killed session with ``--ckpt_path last``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from lightning_gen.callbacks.checkpointing import checkpoint_callbacks
from lightning_gen.callbacks.ema import EMA
from lightning_gen.callbacks.image_grids import ImageGrids
from lightning_gen.callbacks.run_state import RunState
from lightning_gen.commands import COMMANDS, run_command
from lightning_gen.errors import UserError
from lightning_gen.run_dir import RunLocation, latest_checkpoint, new_run, read_run_info, resumed_run
from lightning_gen.settings import SETTINGS
from lightning_gen.tracking.loggers import make_logger

class ConfigToLoggers(SaveConfigCallback):
    """Saves the resolved config as ``config.yaml`` in the run directory and as the W&B run config."""

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        config = json.loads(self.parser.dump(self.config, skip_none=False, format="json"))
        for logger in trainer.loggers:
            logger.log_hyperparams(config)


class GenerativeCLI(LightningCLI):
    def __init__(self, args: list[str] | None = None, run: bool = True):
        super().__init__(
            model_class=pl.LightningModule,
            datamodule_class=pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=ConfigToLoggers,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"default_root_dir": "runs", "logger": False, "enable_checkpointing": True},
            auto_configure_optimizers=False,
            args=args,
            run=run,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for key, settings in SETTINGS.items():
            parser.add_argument(f"--{key}", type=settings, default=settings())
        # Data facts (image size, channels, condition vocabulary) are read off the datamodule, never typed twice.
        parser.link_arguments("data.facts", "model.init_args.data_facts", apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        # LightningCLI would merge the checkpoint's hyperparameters into the config; ours hold the linked
        # data facts, which a config may not set. The YAML config stays the single source of settings.
        return

    # -- run directory and resume ---------------------------------------------------------------
    def _experiment_name(self, config: Any) -> str:
        if config.tracking.name:
            return config.tracking.name
        config_files = config.get("config") or []
        return Path(str(config_files[0])).stem if config_files else "default"

    def _run_location(self, config: Any) -> RunLocation:
        root = config.trainer.default_root_dir or "runs"
        experiment = self._experiment_name(config)
        ckpt_path = config.get("ckpt_path")
        if ckpt_path == "last":
            ckpt_path = str(latest_checkpoint(root, experiment))
            config.ckpt_path = ckpt_path
        if ckpt_path in (None, "best", "hpc", "registry"):
            return new_run(root, experiment)
        if not Path(ckpt_path).is_file():
            raise UserError(f"--ckpt_path {ckpt_path} is not a file; pass a .ckpt file or 'last' to continue the newest run of '{experiment}'.")
        if self.subcommand == "fit":
            info = read_run_info(ckpt_path)
            if info.get("run_id"):
                return resumed_run(root, ckpt_path, info)
        return new_run(root, experiment)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        self.run_location = self._run_location(config)

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        run = self.run_location
        tracking, checkpointing, ema, images = (config[key] for key in SETTINGS)
        callbacks: list[pl.Callback] = [RunState(run), ImageGrids(run.images, images)]
        if self.subcommand == "fit":
            callbacks += checkpoint_callbacks(run.checkpoints, checkpointing)
        if ema.enabled:
            callbacks.append(EMA(decay=ema.decay, warmup=ema.warmup))  # after ImageGrids: grids see EMA weights
        configured = config.trainer.get("callbacks") or []
        kwargs["callbacks"] = [*(configured if isinstance(configured, list) else [configured]), *callbacks]
        kwargs.setdefault("logger", make_logger(tracking, run))
        kwargs.setdefault("default_root_dir", str(run.directory))
        return super().instantiate_trainer(**kwargs)

    def _finish_tracking(self) -> None:
        # Close the W&B run now, not at interpreter exit: a notebook (Colab) keeps the process alive,
        # and the offline run's files (config, summary) are complete only once it is finished.
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger) and logger._experiment is not None:
                logger.experiment.finish()

    after_fit = after_validate = after_test = after_predict = _finish_tracking


def find_user_error(error: BaseException) -> UserError | None:
    """jsonargparse wraps an error raised while instantiating a class; the user's mistake is in the chain."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    program, saved_argv = sys.argv[:1], sys.argv
    try:
        if argv and argv[0] in COMMANDS:
            run_command(argv[0], argv[1:])
        else:
            # LightningCLI reads sys.argv; a call from Python (tests, notebooks) runs as that command line.
            sys.argv = program + argv
            GenerativeCLI()
    except Exception as error:
        user_error = find_user_error(error)
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        sys.argv = saved_argv
