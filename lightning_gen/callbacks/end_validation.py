"""Validation (metrics, grids, best-k checkpoints) at the end of every fit and at least every N minutes of training.

Lightning validates only on its own cadence (``check_val_every_n_epoch``, ``val_check_interval``), so a run that
``max_time`` or a mid-epoch ``max_steps`` stops before its next scheduled validation ends with no ``val/*`` metric
and no image grid at all. Two callbacks close that gap (``validation_callbacks``):

- ``ValidationTrigger`` decides, at the end of every optimizer step, whether this step must validate: it is the
  run's last (``max_steps`` reached, the last batch of the last epoch, or ``trainer.should_stop`` set by the Timer
  of ``max_time``, early stopping or any callback) and ``images.validate_at_end`` is on; or ``images.every_n_minutes``
  of training have passed since the last validation (rank 0's clock, broadcast, so every DDP rank agrees; the ranks
  read it only about 100 times per interval, not at every step: a collective per step costs DDP on CPU). It is a
  Lightning ``Checkpoint`` subclass only so that Lightning runs it after every other callback: after the Timer has
  decided to stop and after StopStepSave has saved ``last.ckpt`` at the step's end (lightning_gen.checkpoints.run_end).
- The validation itself is Lightning's own: for that one step the trigger sets the trainer's public
  ``check_val_every_n_epoch`` and ``val_check_batch`` so that the fit loop's regular check says "validate now"
  (in the same place as every scheduled validation: after the step, with EMA weights swapped in, ModelCheckpoint
  saving best-k and last.ckpt at its end), and ``ValidationRequests`` puts them back as soon as it starts.
  A step that validates anyway validates once.

A requested validation leaves no trace in the course of training: the random streams (torch, numpy, python) are
restored at its end, before any checkpoint is written, so a run that validated at its stop and was resumed equals an
uninterrupted one. A checkpoint written during a requested validation records it, so a resume re-arms the same check
and Lightning's restart logic sees the validation as done, exactly as for a scheduled one.

A signal (Ctrl-C, SIGTERM, SIGUSR1) or an exception ends the run without a final validation: the run must stop now,
``last.ckpt`` is saved, and the resumed run validates on its own schedule. The final validation of a ``max_time``
stop runs after the time is up (after last.ckpt is saved): leave room for it below a hard limit.
"""

from __future__ import annotations

import math
import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.utilities import rank_zero_info

from lightning_gen.callbacks.run_state import capture_rng, restore_rng
from lightning_gen.config.settings import ImageSettings

END, TIME = "end of run", "every_n_minutes"
# Under DDP the clock is read about this many times per every_n_minutes (a broadcast each, not one every step),
# so a time-requested validation comes at most about 1 % of the interval late.
TIME_CHECKS_PER_INTERVAL = 100


def now() -> float:
    """The cadence's clock (monotonic seconds); tests replace it."""
    return time.monotonic()


def validation_callbacks(settings: ImageSettings) -> list[pl.Callback]:
    """ValidationRequests (a plain callback) and its ValidationTrigger (which Lightning runs after every other callback)."""
    requests = ValidationRequests(settings)
    return [requests, ValidationTrigger(requests)]


def requested_validation(trainer: pl.Trainer) -> str | None:
    """Why the running validation was requested (``END`` or ``TIME``), None for a scheduled one."""
    for callback in trainer.callbacks:
        if isinstance(callback, ValidationRequests):
            return callback.reason
    return None


def run_ends_after_step(trainer: pl.Trainer, batch_idx: int) -> bool:
    """Whether the fit loop stops after this optimizer step (called at its on_train_batch_end, after the Timer's)."""
    if trainer.should_stop:
        # Lightning stops only once min_epochs / min_steps are met.
        min_steps, min_epochs = trainer.min_steps, trainer.min_epochs
        return (not min_steps or trainer.global_step >= min_steps) and (not min_epochs or trainer.current_epoch + 1 >= min_epochs)
    if 0 <= trainer.max_steps <= trainer.global_step:
        return True
    max_epochs, batches = trainer.max_epochs, trainer.num_training_batches
    last_batch = not math.isinf(batches) and batch_idx + 1 >= batches
    return max_epochs is not None and 0 <= max_epochs <= trainer.current_epoch + 1 and last_batch


class ValidationRequests(pl.Callback):
    """The state of requested validations: why one runs, the trainer settings to put back, the random streams."""

    def __init__(self, settings: ImageSettings | None = None):
        settings = settings or ImageSettings()
        self.validate_at_end = settings.validate_at_end
        self.every_n_minutes = settings.every_n_minutes
        self.reason: str | None = None
        self.last_validation_time: float | None = None
        self._saved_checks: tuple[Any, Any] | None = None
        self._rng: dict[str, Any] | None = None

    # -- asking Lightning's loop to validate after this step -------------------------------------------------
    def request(self, trainer: pl.Trainer, reason: str) -> None:
        self.reason = reason
        self._rng = capture_rng()
        self.last_validation_time = now()  # again at its end; a run without validation data is not asked every step
        self.arm(trainer)

    def arm(self, trainer: pl.Trainer) -> None:
        """Make the fit loop's "validate after this step?" check true for the current step."""
        if self._saved_checks is None:
            self._saved_checks = (trainer.check_val_every_n_epoch, trainer.val_check_batch)
        trainer.check_val_every_n_epoch = 1  # this epoch validates …
        trainer.val_check_batch = 1  # … after this batch

    def disarm(self, trainer: pl.Trainer) -> None:
        if self._saved_checks is not None:
            trainer.check_val_every_n_epoch, trainer.val_check_batch = self._saved_checks
            self._saved_checks = None

    # -- hooks ----------------------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.last_validation_time = now()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        # A request the loop did not act on (no validation data): nothing is pending at a new step.
        self.disarm(trainer)
        self.reason, self._rng = None, None

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.disarm(trainer)  # the loop has decided; ModelCheckpoint must see the configured cadence again

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if self._rng is not None:
            # Before ModelCheckpoint (a Checkpoint: after this) saves: the checkpoint holds the step-end streams.
            restore_rng(self._rng)
        self.reason, self._rng = None, None
        self.last_validation_time = now()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Before ModelCheckpoint's epoch-end hook, which reads check_val_every_n_epoch (a restart that re-armed the
        # check at an epoch's last batch ends that epoch without a batch of its own).
        self.disarm(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.disarm(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.disarm(trainer)


class ValidationTrigger(Checkpoint):
    """Requests a validation after the run's last step and every ``every_n_minutes``; see the module docstring.

    A Checkpoint subclass only for its place in Lightning's callback order (after all other callbacks); it saves nothing.
    Its checkpointed state is the step whose requested validation a checkpoint was written in, if any.
    """

    def __init__(self, requests: ValidationRequests):
        self.requests = requests
        self._validating_step: int | None = None  # set while a requested validation runs
        self._next_time_check = 0  # under DDP: the step at which the ranks next read rank 0's clock
        self._last_check: tuple[int, float] | None = None  # rank 0's (step, clock) at that read
        self._resumed_in_validation: int | None = None

    @property
    def state_key(self) -> str:
        return "ValidationTrigger"

    def state_dict(self) -> dict[str, Any]:
        return {"validating_step": self._validating_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resumed_in_validation = state_dict.get("validating_step")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._resumed_in_validation is not None and self._resumed_in_validation == trainer.global_step:
            # The checkpoint was written at the end of a requested validation: the restarting loop checks whether
            # that step validates, and must find that it did (a scheduled validation's checkpoint restarts so too).
            self.requests.arm(trainer)
        self._resumed_in_validation = None

    def _time_due(self, trainer: pl.Trainer) -> bool:
        minutes, last = self.requests.every_n_minutes, self.requests.last_validation_time
        if not minutes or minutes <= 0 or last is None:
            return False
        clock = now()
        due = clock - last >= 60.0 * minutes
        if trainer.world_size == 1:
            return due
        # Under DDP rank 0's clock decides, broadcast so every rank agrees; the broadcast is a collective every rank
        # makes at the same steps, so it is made only at the steps rank 0 names the time before (every rank knows them).
        if trainer.global_step < self._next_time_check:
            return False
        due, self._next_time_check = trainer.strategy.broadcast((due, self._next_check(trainer.global_step, clock, minutes)), src=0)
        return bool(due)

    def _next_check(self, step: int, clock: float, minutes: float) -> int:
        """The step of the next clock check: about 1/TIME_CHECKS_PER_INTERVAL of the interval from now, at the training
        speed rank 0 measured since its previous check (the next step while it has none)."""
        previous, self._last_check = self._last_check, (step, clock)
        if previous is None or step <= previous[0] or clock <= previous[1]:
            return step + 1
        seconds_per_step = (clock - previous[1]) / (step - previous[0])
        return step + max(1, int(60.0 * minutes / TIME_CHECKS_PER_INTERVAL / seconds_per_step))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        reason = None
        time_due = self._time_due(trainer)  # every rank makes the same collective calls, at the same steps
        if self.requests.validate_at_end and run_ends_after_step(trainer, batch_idx):
            reason = END
        elif time_due:
            reason = TIME
        if reason is None:
            return
        self.requests.request(trainer, reason)
        self._validating_step = trainer.global_step
        if reason == TIME:
            rank_zero_info(
                f"Validating at step {trainer.global_step}: {self.requests.every_n_minutes:g} minutes since "
                f"the last validation (images.every_n_minutes)."
            )

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After ModelCheckpoint's save (checkpoint callbacks keep their order): that save recorded the request.
        if not trainer.sanity_checking:
            self._validating_step = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        self._validating_step = None
