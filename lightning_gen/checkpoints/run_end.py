"""Every way a fit ends saves ``last.ckpt`` first: max_steps, max_time, Ctrl-C, SIGTERM, SIGUSR1, an exception.

Lightning's ModelCheckpoint saves last.ckpt only together with a periodic or validation save, so a run
stopped by ``max_time`` between two of those loses everything since the previous one. A stop by
``max_time`` or ``max_steps`` is saved at the end of its last step (StopStepSave), where a periodic
save would be: once the loop has wound down Lightning counts the epoch as finished, and a resume
would skip the rest of it. Lightning's
OnExceptionCheckpoint would write at the wrong moment for this framework: checkpoint callbacks run
after all others, i.e. after EMA has copied the average over the raw weights (end of training) and,
mid-validation, while the EMA weights are swapped into the model. This callback sits before EMA and
undoes an open validation swap before it saves.

Signals are turned into Lightning's own graceful stop: SIGTERM already is one (Lightning finishes the
current batch, raises SIGTERMException on every rank, and this callback saves in on_exception). The
first Ctrl-C (SIGINT) and SIGUSR1 are routed to the same handler; a second Ctrl-C interrupts at once.
Under SLURM with auto-requeue, SIGUSR1 saves last.ckpt and then requeues the job (instead of
Lightning's hpc_ckpt file, which a run directory per version would never find again).

The run's own error stays the one raised: nothing this callback does at an exception may raise in turn
(a failed save is one warning line). A stop by a signal is recorded on the exception (``stop_of``), so the
command line exits with 128 + the signal's number (0 when SLURM requeued the job) and says how to continue.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Checkpoint, WeightAveraging
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lightning_gen.callbacks.nonfinite_guard import NonFiniteStop
from lightning_gen.callbacks.run_state import capture_rng, restore_rng
from lightning_gen.compat import forget_unfinished_batch

GRACEFUL_SIGNALS = (signal.SIGINT, signal.SIGUSR1)


def floating_tensors(value: Any) -> Iterator[torch.Tensor]:
    """The floating-point tensors in a state_dict (or any value of one): besides tensors, a state_dict holds each
    module's extra state, any object — the VAE's latent prior keeps its mixture there as a dict of tensors."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from floating_tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from floating_tensors(item)


def weights_are_finite(module: torch.nn.Module) -> bool:
    # Tensor by tensor: a norm of all of them would overflow to Inf for large but finite weights.
    return all(bool(torch.isfinite(tensor).all()) for tensor in floating_tensors(module.state_dict()))


@dataclass
class Stop:
    """How a run stopped by a signal ended: recorded on the exception that ends it, read by the command line."""

    signum: int
    requeued: bool  # SLURM requeued the job, which continues on its own
    last_ckpt: Path | None  # what `--ckpt_path last` continues from; None when nothing was saved
    global_zero: bool  # the process that reports it

    @property
    def exit_code(self) -> int:
        return 0 if self.requeued else 128 + self.signum


STOP_ATTRIBUTE = "lightning_gen_stop"


def stop_of(error: BaseException | None) -> Stop | None:
    """The signal stop recorded on ``error`` or an exception it was raised while handling (Lightning turns a second
    Ctrl-C's KeyboardInterrupt into sys.exit(1))."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        stop = getattr(error, STOP_ATTRIBUTE, None)
        if isinstance(stop, Stop):
            return stop
        seen.add(id(error))
        error = error.__context__
    return None


def slurm_auto_requeue(trainer: pl.Trainer) -> bool:
    environment = getattr(trainer.strategy, "cluster_environment", None)
    if isinstance(environment, SLURMEnvironment):
        return environment.auto_requeue
    return environment is None and SLURMEnvironment.detect()


def requeue_slurm_job() -> bool:
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_job else os.environ["SLURM_JOB_ID"]
    try:
        result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    except OSError as error:  # no scontrol on this node
        rank_zero_warn(f"Requeuing SLURM job {job} failed: {error}")
        return False
    if result.returncode == 0:
        rank_zero_info(f"Requeued SLURM job {job}; it resumes from last.ckpt when started with --ckpt_path last.")
        return True
    rank_zero_warn(f"Requeuing SLURM job {job} failed: {result.stderr.strip()}")
    return False


def run_end_callbacks(directory: Path) -> list[pl.Callback]:
    """RunEndSave (list it before EMA) and its StopStepSave (Lightning moves it after every other callback)."""
    run_end = RunEndSave(directory)
    return [run_end, StopStepSave(run_end)]


class RunEndSave(pl.Callback):
    """Saves ``<directory>/last.ckpt`` when a fit ends for any reason, unless it already holds this step."""

    def __init__(self, directory: Path):
        self.last_path = Path(directory) / "last.ckpt"
        self._start_step: int | None = None  # None until training starts: a failed setup saves nothing
        self._saved_step: int | None = None
        self._in_validation_epoch = False
        self._previous_handlers: dict[int, Any] = {}
        self._stop_requested = False
        self._stop_signal: int | None = None  # the signal routed to the graceful stop (SIGTERM goes to Lightning directly)
        self._requeue = False
        self._boundary_rng: dict[str, Any] | None = None
        self._boundary_step: int | None = None

    # -- what the newest checkpoint holds ---------------------------------------------------------
    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        # ModelCheckpoint(save_last=True) writes last.ckpt with every checkpoint it saves.
        self._saved_step = trainer.global_step

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start_step = trainer.global_step
        self.remember_step_boundary(trainer)
        self._install_signal_handlers(trainer)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._in_validation_epoch = True  # EMA swaps its average into the model right after this

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._in_validation_epoch = False

    def remember_step_boundary(self, trainer: pl.Trainer) -> None:
        """The random streams between two steps: an exception mid-step is saved with them, because a resume replays
        that step from its start (its batch is fetched and augmented again, its noise drawn again)."""
        self._boundary_rng = capture_rng()
        self._boundary_step = trainer.global_step

    def _rewind_to_step_boundary(self, trainer: pl.Trainer) -> None:
        """An exception inside a step that has not reached the optimizer: save the state of the step's start.

        Lightning counts the batch as fetched (and the model's noise is a function of that count); its restart
        logic forgets the fetch only in the epoch's counters, so the total counters are rewound here too. The
        process is ending, so changing its counters and random streams harms nothing.
        """
        if self._boundary_step is None or trainer.global_step != self._boundary_step:
            return  # the step reached the optimizer: the state is the batch-end one Lightning restarts from
        forget_unfinished_batch(trainer)
        if self._boundary_rng is not None:
            restore_rng(self._boundary_rng)  # RunState saves these streams

    # -- the ends of a run ------------------------------------------------------------------------
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_signal_handlers()
        self._save_last(trainer, "training ended")
        if self._requeue and trainer.is_global_zero:
            requeue_slurm_job()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # Whatever goes wrong here, the run's own error stays the one raised (not buried under a second traceback).
        self._restore_signal_handlers()
        try:
            self._save_at_exception(trainer, pl_module, exception)
        except Exception as error:
            rank_zero_warn(
                f"could not save {self.last_path} after {type(exception).__name__} ({type(error).__name__}: {error}); "
                f"the newest checkpoint is the one saved before."
            )
        requeued = False
        if self._requeue and trainer.is_global_zero:
            try:
                requeued = requeue_slurm_job()
            except Exception as error:  # e.g. no SLURM_JOB_ID: the job is not requeued, the run's own stop stays
                rank_zero_warn(f"could not requeue the SLURM job ({type(error).__name__}: {error}).")
        if isinstance(exception, (SIGTERMException, KeyboardInterrupt)):
            signum = signal.SIGINT if isinstance(exception, KeyboardInterrupt) else self._stop_signal or signal.SIGTERM
            last = self.last_path if self.last_path.is_file() else None
            requeued = requeued or (self._requeue and not trainer.is_global_zero)  # rank 0 requeues the job
            setattr(exception, STOP_ATTRIBUTE, Stop(int(signum), requeued, last, trainer.is_global_zero))

    def _save_at_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if self._in_validation_epoch:
            # Interrupted between EMA's swap and its swap back: put the raw weights back first.
            self._in_validation_epoch = False
            for callback in trainer.callbacks:
                if isinstance(callback, WeightAveraging):
                    callback.on_validation_epoch_end(trainer, pl_module)
        synchronised = isinstance(exception, (SIGTERMException, NonFiniteStop))  # raised on every rank at once
        if trainer.world_size > 1 and not synchronised:
            rank_zero_warn(
                f"{type(exception).__name__} on one process of a multi-process run: last.ckpt not saved "
                "(the other processes cannot join the save); resume from the newest checkpoint."
            )
        elif not weights_are_finite(pl_module):
            rank_zero_warn(f"the weights hold NaN/Inf at step {trainer.global_step}: last.ckpt not overwritten.")
        else:
            self._rewind_to_step_boundary(trainer)
            self._save_last(trainer, f"{type(exception).__name__}")

    def _save_last(self, trainer: pl.Trainer, reason: str) -> None:
        if self._start_step is None or trainer.global_step == self._start_step:
            return  # nothing trained since the run started or resumed
        if self._saved_step == trainer.global_step and self.last_path.is_file():
            return
        try:
            trainer.save_checkpoint(
                self.last_path, weights_only=False
            )  # the full, resumable state (said, so Lightning does not log its default)
        except Exception as error:  # the run is ending anyway; the previous last.ckpt is intact (atomic writes)
            rank_zero_warn(f"could not save {self.last_path} at the end of the run ({type(error).__name__}: {error}).")
            return
        self._saved_step = trainer.global_step
        rank_zero_info(f"Saved {self.last_path} at step {trainer.global_step} ({reason}).")

    # -- signals ----------------------------------------------------------------------------------
    def _install_signal_handlers(self, trainer: pl.Trainer) -> None:
        # After Lightning has registered its own (it does so after on_fit_start, before on_train_start).
        if threading.current_thread() is not threading.main_thread():
            return
        self._stop_requested = False
        self._stop_signal = None
        for signum in GRACEFUL_SIGNALS:
            self._previous_handlers[signum] = signal.getsignal(signum)
            signal.signal(signum, partial(self._request_stop, trainer))

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous_handlers = {}

    def _request_stop(self, trainer: pl.Trainer, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self._stop_requested:
            raise KeyboardInterrupt  # the second Ctrl-C: stop at once
        self._stop_requested = True
        self._stop_signal = self._stop_signal or signum
        if signum == signal.SIGUSR1 and slurm_auto_requeue(trainer):
            self._requeue = True
        rank_zero_info(
            f"\n{signal.Signals(signum).name}: finishing step {trainer.global_step + 1}, then saving {self.last_path}"
            + (" (Ctrl-C again to stop at once)." if signum == signal.SIGINT else ".")
        )
        # Lightning's SIGTERM handler is the graceful stop: it ends the batch, tells the other ranks and raises
        # SIGTERMException, on which on_exception saves.
        sigterm_handler = signal.getsignal(signal.SIGTERM)
        if callable(sigterm_handler):
            sigterm_handler(signal.SIGTERM, frame)
        else:
            trainer.should_stop = True


class StopStepSave(Checkpoint):
    """Saves last.ckpt at the end of the step where max_steps is reached or max_time (Lightning's Timer) stops the run.

    A Checkpoint subclass, so that Lightning runs it after all other callbacks: after the Timer has decided
    and EMA has updated its average, as ModelCheckpoint's periodic saves are taken.
    """

    def __init__(self, run_end: RunEndSave):
        self.run_end = run_end

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Last of all callbacks, where periodic checkpoints are taken: the step's end, as a resume sees it.
        self.run_end.remember_step_boundary(trainer)
        if trainer.should_stop or 0 <= trainer.max_steps <= trainer.global_step:
            self.run_end._save_last(trainer, "the run stops after this step")
