"""Learning-rate schedules usable from a config (``lr_scheduler: class_path: lightning_gen.models.schedules.WarmupCosine``).

A run-length schedule spans the run, whatever limit ends it:

- its *step* length: ``lr_scheduler.init_args.total_steps`` when given, else the run's count of scheduler steps
  (Lightning's ``estimated_stepping_batches`` from ``trainer.max_steps`` or ``trainer.max_epochs``, devices and
  gradient accumulation counted; the epochs when stepped per epoch);
- its *time* length: ``trainer.max_time`` (Lightning's Timer callback), when the run has one.

Progress through the schedule is ``max(step progress, elapsed training time / max_time)``, so the rate reaches its
floor as the run ends, by whichever limit ends it first; a run limited by ``max_time`` alone follows the time only.
The elapsed time is the Timer's ``time_elapsed("train")``: wall time since training started (validation and grids
included, as max_time counts them), plus the time of the sessions before a resume (the Timer's checkpointed state),
so ``max_time`` is the run's whole training time and a resumed run continues the progress where it stopped.
A resume takes its position (steps, time spent) from the checkpoint and its lengths from the resumed session's
config and trainer limits: resumed with a larger max_steps or max_time, the rest of the schedule stretches to it.
One line at the start of a fit says which lengths the schedule follows.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from lightning_gen.errors import UserError

TimeProgress = Callable[[], float]  # the fraction of the run's time limit spent so far (≥ 1 once it is reached)
THIS_SESSION = ("total_steps", "warmup_steps", "_time_progress")  # what a resume does not take from the checkpoint


class RunLengthSchedule:
    """A schedule shaped by the run's length: without an explicit ``total_steps`` it gets the run's count of
    scheduler steps from the model (``trainer.estimated_stepping_batches``, or the epochs when stepped per epoch),
    and with a ``trainer.max_time`` it also follows the training time spent (see ``fit_schedule_to_run``)."""

    total_steps: int | None

    def set_total_steps(self, total_steps: int) -> None:
        raise NotImplementedError

    def follow_time(self, progress: TimeProgress | None) -> None:
        raise NotImplementedError

    def progress(self, step: int) -> float:
        raise NotImplementedError


@functools.lru_cache(maxsize=16)
def cosine_decay(min_lr_ratio: float) -> Callable[[float], float]:
    """transformers' cosine-with-min-lr factor as a function of the decay's progress in [0, 1].

    It is the ``LambdaLR`` factor of ``get_cosine_with_min_lr_schedule_with_warmup`` over a one-step run without
    warm-up, whose progress at "step" ``p`` is ``p`` itself; WarmupCosine feeds it the run's progress (steps or
    time, see ``progress``), which transformers' own step-indexed schedule cannot follow. Built once per ratio.
    """
    from transformers.optimization import get_cosine_with_min_lr_schedule_with_warmup  # transformers loads slowly

    probe = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = get_cosine_with_min_lr_schedule_with_warmup(probe, num_warmup_steps=0, num_training_steps=1, min_lr_rate=min_lr_ratio)
    return schedule.lr_lambdas[0]


class WarmupCosine(LambdaLR, RunLengthSchedule):
    """Linear warm-up to the optimizer's lr over ``warmup_steps``, then cosine decay to ``min_lr_ratio``·lr
    (transformers' cosine-with-min-lr factor, see ``cosine_decay``; the run's length and the warm-up are ours).

    Step it every optimizer step (``scheduler_interval: step``, the default). ``total_steps`` defaults to
    the run's length (Lightning's estimate from max_steps or max_epochs, devices and gradient accumulation),
    so the rate reaches its minimum exactly as the run ends; a config may still give it, after which the
    rate stays at its minimum. With ``trainer.max_time`` the decay also follows the time: its progress is
    ``max((step − warmup) / (total − warmup), elapsed / max_time)`` (time alone when the run has no step
    limit), and the factor is ``min(warm-up ramp, cosine(progress))``, so a run whose time ends during the
    warm-up still ends at (or below) the floor. A derived run length shorter than ``warmup_steps``
    (``fast_dev_run``, a few ``max_steps``) shortens the warm-up to the run, with a warning.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int,
        total_steps: int | None = None,
        min_lr_ratio: float = 0.0,
        last_epoch: int = -1,
    ):
        if warmup_steps < 0:
            raise UserError(f"WarmupCosine warmup_steps must be >= 0, got {warmup_steps}; fix lr_scheduler.init_args in the config.")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise UserError(f"WarmupCosine min_lr_ratio must be in [0, 1], got {min_lr_ratio}; fix lr_scheduler.init_args.")
        # Set before LambdaLR.__init__, which already evaluates the factor for step 0.
        self.warmup_steps = warmup_steps
        self.total_steps = None
        self.min_lr_ratio = min_lr_ratio
        self._time_progress: TimeProgress | None = None  # bound per process, never saved (see state_dict)
        if total_steps is not None:
            self.set_total_steps(total_steps, given=True)
        super().__init__(optimizer, self.factor, last_epoch)

    def set_total_steps(self, total_steps: int, given: bool = False) -> None:
        total_steps = int(total_steps)
        if given:
            if total_steps <= 0 or self.warmup_steps > total_steps:
                raise UserError(
                    f"WarmupCosine needs 0 <= warmup_steps <= total_steps and total_steps > 0, got warmup_steps={self.warmup_steps} "
                    f"and total_steps={total_steps} from lr_scheduler.init_args.total_steps; fix lr_scheduler.init_args in the config."
                )
        else:
            total_steps = max(0, total_steps)
            if self.warmup_steps > total_steps:
                rank_zero_warn(
                    f"WarmupCosine: warmup_steps={self.warmup_steps} is longer than this run's {total_steps} steps "
                    f"(trainer.max_steps, max_epochs or fast_dev_run); warming up over {total_steps} steps instead."
                )
                self.warmup_steps = total_steps
        self.total_steps = total_steps
        self._apply_current()

    def follow_time(self, progress: TimeProgress | None) -> None:
        """Follow the run's time limit too: ``progress()`` is the fraction of it spent (None: steps only)."""
        self._time_progress = progress
        self._apply_current()

    def progress(self, step: int) -> float:
        """How far the decay is, in [0, 1]: the larger of the step and the time progress."""
        step_progress = 0.0
        if self.total_steps is not None:
            step_progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        time_progress = self._time_progress() if self._time_progress is not None else 0.0
        return min(1.0, max(0.0, step_progress, time_progress))

    def factor(self, step: int) -> float:
        ramp = (step + 1) / self.warmup_steps if step < self.warmup_steps else 1.0  # never 0: the first step learns
        progress = self.progress(step)  # 0 for step 0 before the model set the run's length
        if progress <= 0.0:
            return ramp
        return min(ramp, cosine_decay(self.min_lr_ratio)(progress))

    def _apply_current(self) -> None:
        """Set the optimizer's rates to this step's, as LambdaLR.step would (once constructed)."""
        if not hasattr(self, "base_lrs"):
            return  # LambdaLR.__init__ has not run yet: it applies the factor itself
        values = [base_lr * self.factor(self.last_epoch) for base_lr in self.base_lrs]
        for group, value in zip(self.optimizer.param_groups, values):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(value)
            else:
                group["lr"] = value
        self._last_lr = values

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.pop("_time_progress", None)  # a closure over this process's Timer
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # A resume takes its position (the step count) from the checkpoint and its lengths from this session: the
        # config's total_steps, or this run's max_steps/max_epochs (a longer run stretches the schedule), and its
        # max_time, as the line printed at the start says.
        lengths = {key: getattr(self, key) for key in THIS_SESSION}
        super().load_state_dict({key: value for key, value in state_dict.items() if key not in THIS_SESSION})
        self.__dict__.update(lengths)
        # The optimizer holds the rate the last session ended with; the rate of this step is now the schedule's
        # (the time progress continues from the restored Timer, its earlier sessions' time, against this max_time).
        self._apply_current()


# -- fitting a schedule to the run ------------------------------------------------------------------------------
def time_limit(trainer: pl.Trainer) -> tuple[Timer, float] | None:
    """The run's Timer (``trainer.max_time`` or a Timer in trainer.callbacks) and its duration in seconds, if it has one."""
    for callback in trainer.callbacks:
        if isinstance(callback, Timer):
            remaining = callback.time_remaining("train")
            if remaining is not None:
                # Read before training starts, both are constant (elapsed = the restored sessions' time).
                return callback, callback.time_elapsed("train") + remaining
    return None


def timer_progress(timer: Timer, duration: float) -> TimeProgress:
    return lambda: timer.time_elapsed("train") / duration if duration > 0 else 1.0


def scheduler_steps_of_run(trainer: pl.Trainer, interval: str) -> int | None:
    """How often the scheduler steps in this run (optimizer steps, devices and accumulation counted, or epochs);
    None when neither max_steps nor max_epochs limits it."""
    total = trainer.estimated_stepping_batches if interval == "step" else trainer.max_epochs
    if total is None or total < 0 or math.isinf(total):
        return None
    return int(total)


def _steps_source(trainer: pl.Trainer, interval: str, given: bool, steps: int) -> str:
    if given:
        return "lr_scheduler.init_args.total_steps"
    if trainer.fast_dev_run:
        return "fast_dev_run"
    if interval == "step" and trainer.max_steps == steps:
        return "trainer.max_steps"
    return "trainer.max_epochs"


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


def fit_schedule_to_run(scheduler: Any, trainer: pl.Trainer, interval: str = "step") -> None:
    """Give a run-length schedule the run's lengths (steps and/or max_time) and say in one line which it follows."""
    if not isinstance(scheduler, RunLengthSchedule):
        return
    given = scheduler.total_steps is not None
    if not given:
        steps = scheduler_steps_of_run(trainer, interval)
        if steps is not None:
            scheduler.set_total_steps(steps)
    limit = time_limit(trainer)
    if limit is not None:
        scheduler.follow_time(timer_progress(*limit))
    if scheduler.total_steps is None and limit is None:
        raise UserError(
            "the LR schedule needs the run's length, but the run is limited by none of trainer.max_steps, trainer.max_epochs "
            "and trainer.max_time; set one of them or lr_scheduler.init_args.total_steps."
        )
    name, total = type(scheduler).__name__, scheduler.total_steps
    parts = []
    if total is not None:
        unit = ("optimizer step" if interval == "step" else "epoch") + ("" if total == 1 else "s")
        parts.append(f"{total:,} {unit} (from {_steps_source(trainer, interval, given, total)})")
    if limit is not None:
        timer, duration = limit
        spent = timer.time_elapsed("train")
        resumed = f", {_duration(spent)} of it already trained" if spent > 0 else ""
        parts.append(f"trainer.max_time {_duration(duration)} of training time{resumed}")
    which = " or ".join(parts) + (", whichever ends the run first" if len(parts) > 1 else "")
    rank_zero_info(f"LR schedule: {name} decays over {which}.")
