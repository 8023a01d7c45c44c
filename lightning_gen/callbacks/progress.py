"""Training progress as plain lines when stdout is not a terminal (Colab ``!python`` cells, nohup, SLURM logs).

Lightning's bars redraw one line with ``\\r``; in a pipe that output is held back and shows only when the run
ends. ``LineProgress`` prints, and flushes, one line a few seconds after training starts and then every
``LIGHTNING_GEN_PROGRESS_SECONDS`` (30) seconds::

    epoch 3/60, step 130/3120, batch 25/52, 1.81 it/s, ETA 0:27:32, loss 0.0341, elapsed 0:01:12

plus one line with the validation metrics after each validation, and one when training ends. A terminal (or a
notebook kernel) keeps Lightning's own bar; ``LIGHTNING_GEN_PROGRESS=lines|bar|off`` chooses explicitly.
"""

from __future__ import annotations

import math
import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ProgressBar, Timer

from lightning_gen.console.progress import duration, emit, eta, first_line_seconds, interval_seconds, mode, rate


def progress_callbacks(enable_progress_bar: bool | None, configured: list[Callback]) -> list[Callback]:
    """``[LineProgress()]`` when the output is a pipe (or LIGHTNING_GEN_PROGRESS=lines) and the run shows progress
    at all, unless the config lists its own progress bar; else ``[]`` (Lightning adds its bar as usual)."""
    if enable_progress_bar is False or any(isinstance(callback, ProgressBar) for callback in configured):
        return []
    return [LineProgress()] if mode() == "lines" else []


def _number(value: Any) -> float | None:
    try:
        number = float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, RuntimeError):
        return None
    return number if math.isfinite(number) else None


def _format(value: float) -> str:
    return f"{value:.4g}"


class LineProgress(ProgressBar):
    """A progress "bar" of whole lines: epoch, step/total, batch/epoch length, it/s, ETA, loss, elapsed."""

    def __init__(self, every: float | None = None):
        super().__init__()
        self.every = interval_seconds() if every is None else every
        self._enabled = True
        self._fit_started: float | None = None
        self._start_step = 0
        self._next_line = 0.0
        self._window_time = 0.0
        self._window_batches = 0
        self._eval_started = 0.0
        self._eval_batches = 0
        self._lines = 0

    # -- the ProgressBar interface ----------------------------------------------------------------
    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def print(self, *args: Any, **kwargs: Any) -> None:
        if self._enabled:
            print(*args, **{"flush": True, **kwargs})

    def _emit(self, line: str) -> None:
        if self._enabled:
            emit(line)
            self._lines += 1

    def _due(self, now: float) -> bool:
        if now < self._next_line:
            return False
        self._next_line = now + self.every
        return True

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._next_line = time.monotonic() + first_line_seconds(self.every)  # a long sanity check shows lines too

    # -- training ----------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        now = time.monotonic()
        self._fit_started = now
        self._start_step = trainer.global_step
        self._next_line = now + first_line_seconds(self.every)
        self._window_time, self._window_batches = now, 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._window_batches += 1
        now = time.monotonic()
        if self._due(now):
            self._emit(self.training_line(trainer, batch_idx + 1, now))
            self._window_time, self._window_batches = now, 0

    def total_steps(self, trainer: pl.Trainer) -> float:
        try:
            total = float(trainer.estimated_stepping_batches)
        except Exception:  # an iterable without a length, or no run length at all
            return math.inf
        if trainer.max_steps is not None and trainer.max_steps > 0:
            total = min(total, trainer.max_steps)
        return total

    def seconds_left(self, trainer: pl.Trainer, now: float) -> float:
        elapsed = now - (self._fit_started or now)
        left = eta(trainer.global_step - self._start_step, self.total_steps(trainer) - self._start_step, elapsed)
        for callback in trainer.callbacks:
            if isinstance(callback, Timer):  # --trainer.max_time
                remaining = callback.time_remaining()
                if remaining is not None:
                    left = min(left, remaining)
        return left

    def training_line(self, trainer: pl.Trainer, batch: int, now: float) -> str:
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs is not None and trainer.max_epochs > 0 else ""
        total = self.total_steps(trainer)
        steps = f"/{int(total)}" if math.isfinite(total) else ""
        batches = self.total_train_batches
        per_epoch = f"/{int(batches)}" if math.isfinite(batches) else ""
        parts = [
            f"epoch {trainer.current_epoch + 1}{epochs}",
            f"step {trainer.global_step}{steps}",
            f"batch {batch}{per_epoch}",
            rate(self._window_batches, now - self._window_time),
            f"ETA {duration(self.seconds_left(trainer, now))}",
        ]
        loss = self.training_loss(trainer)
        if loss is not None:
            parts.append(f"loss {_format(loss)}")
        parts.append(f"elapsed {duration(now - (self._fit_started or now))}")
        return ", ".join(parts)

    @staticmethod
    def training_loss(trainer: pl.Trainer) -> float | None:
        metrics = {**trainer.callback_metrics, **trainer.progress_bar_metrics}
        for key in ("train/loss", "train_loss", "loss", "train/loss_step"):
            if key in metrics and (value := _number(metrics[key])) is not None:
                return value
        for key, value in metrics.items():
            if key.startswith("train") and key.endswith("loss") and (number := _number(value)) is not None:
                return number
        return None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        now = time.monotonic()
        elapsed = now - (self._fit_started or now)
        steps = trainer.global_step - self._start_step
        if self._lines or elapsed >= first_line_seconds(self.every):  # a quick fit (a downstream classifier) ends quietly
            self._emit(f"training ended at step {trainer.global_step}: {steps} steps in {duration(elapsed)} ({rate(steps, elapsed)})")

    # -- validation, test and predict loops ----------------------------------------------------------
    def _eval_start(self) -> None:
        self._eval_started, self._eval_batches = time.monotonic(), 0
        if self._fit_started is None:  # validate/test/predict on their own: the first line comes soon too
            self._next_line = self._eval_started + first_line_seconds(self.every)

    def _eval_batch(self, what: str, total: float) -> None:
        self._eval_batches += 1
        now = time.monotonic()
        known = math.isfinite(total) and total > 0
        if (not known or self._eval_batches < total) and self._due(now):  # the loop's last batch: its result line follows
            parts = [
                f"{what}: batch {self._eval_batches}{f'/{int(total)}' if known else ''}",
                rate(self._eval_batches, now - self._eval_started),
            ]
            if known:
                parts.append(f"ETA {duration(eta(self._eval_batches, total, now - self._eval_started))}")
            self._emit(", ".join(parts))

    def _eval_total(self, trainer: pl.Trainer, totals: Any) -> float:
        return float(sum(totals) if isinstance(totals, list) else totals)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval_start()

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if trainer.sanity_checking:
            self._eval_batch("sanity check", self._eval_total(trainer, trainer.num_sanity_val_batches))
        else:
            where = f" (epoch {trainer.current_epoch + 1}, step {trainer.global_step})" if self._fit_started is not None else ""
            self._eval_batch(f"validation{where}", self._eval_total(trainer, trainer.num_val_batches))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self._fit_started is None:  # `validate` prints its own table of results
            return
        self._window_time += time.monotonic() - self._eval_started  # it/s counts training batches only
        metrics = {
            key: number
            for key, value in trainer.progress_bar_metrics.items()
            if key.startswith("val") and (number := _number(value)) is not None
        }
        if not metrics:
            return
        self._emit(
            f"validation after epoch {trainer.current_epoch + 1}, step {trainer.global_step}: "
            + ", ".join(f"{key} {_format(value)}" for key, value in metrics.items())
        )

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval_start()

    def on_test_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._eval_batch("test", self._eval_total(trainer, trainer.num_test_batches))

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval_start()

    def on_predict_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._eval_batch("predict", self._eval_total(trainer, trainer.num_predict_batches))
