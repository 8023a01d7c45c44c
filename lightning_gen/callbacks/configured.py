"""What a config lists under ``trainer.logger`` and ``trainer.callbacks`` beside what the CLI adds itself.

The CLI builds the run's logger (``tracking.logger``), its checkpoints (``checkpointing.*`` and the run-end save of
``last.ckpt``) and its EMA (``ema.*``) in an order that carries correctness (lightning_gen.cli). A user's own copy of
one of them would be silently replaced (a logger), average twice (a second weight average) or overwrite ``last.ckpt``
(a second checkpoint writer), so it is refused in one sentence naming the setting to use instead; a user's own weight
average with ``ema.enabled false`` takes the place of ours.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint, OnExceptionCheckpoint, WeightAveraging
from lightning.pytorch.loggers import Logger

from lightning_gen.config.settings import EMASettings
from lightning_gen.errors import UserError


def check_configured_logger(logger: Any) -> None:
    """Refuses a logger under ``trainer.logger``: the run's logger is ``tracking.logger``'s, inside the run directory."""
    loggers = logger if isinstance(logger, (list, tuple)) else [logger]
    for each in loggers:
        if isinstance(each, Logger):
            raise UserError(
                f"trainer.logger sets a {type(each).__name__}, but lightning_gen makes the run's logger itself, inside the "
                f"run directory (where the grids, config and W&B run id belong); remove trainer.logger and choose "
                f"tracking.logger (wandb, tensorboard, csv or none)."
            )


def placed_callbacks(configured: list[pl.Callback], ema: EMASettings) -> tuple[list[pl.Callback], pl.Callback | None]:
    """The user's callbacks to list first, and the user's weight average (None: none) that goes in our EMA's place.

    Raises a UserError for a checkpoint writer or, with ``ema.enabled``, a second weight average.
    """
    averaging: pl.Callback | None = None
    rest: list[pl.Callback] = []
    for callback in configured:
        name = type(callback).__name__
        if isinstance(callback, (ModelCheckpoint, OnExceptionCheckpoint)):
            raise UserError(
                f"trainer.callbacks lists {name}, but lightning_gen saves last.ckpt (at every save and whenever a run ends, "
                f"exceptions included), best-k and periodic checkpoints itself; remove it and use the checkpointing.* "
                f"settings (monitor, save_top_k, every_n_steps, every_n_minutes, keep_periodic)."
            )
        if isinstance(callback, WeightAveraging):
            if ema.enabled or averaging is not None:
                raise UserError(
                    f"trainer.callbacks lists {name}, a second weight average beside lightning_gen's EMA; remove it and "
                    f"set ema.decay / ema.warmup, or keep it and add --ema.enabled false."
                )
            averaging = callback
            continue
        rest.append(callback)
    return rest, averaging
