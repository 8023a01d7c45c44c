"""When a scoring callback (SampleQuality, JudgeScore) scores: every N epochs or every N optimizer steps, and at the end.

Epoch-limited runs count epochs; a step-limited run (``max_steps`` with ``max_epochs: -1``, as the Imagen preset runs)
may count steps instead. A cadence of N steps scores at the first validation at or after each multiple of N (steps
counted from 0, the count restarting from the resumed step). Both score at the run's final validation (its last
epoch, its max_steps, or the end-of-run validation of lightning_gen.callbacks.end_validation), never at the sanity
check, and at an ``images.every_n_minutes`` validation only when it is also the epoch's own and due. Outside a fit
(``validate``) they score at once.
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.trainer.states import TrainerFn

from lightning_gen.callbacks.end_validation import END, requested_validation
from lightning_gen.callbacks.image_grids import is_final_validation
from lightning_gen.errors import UserError


class Cadence:
    """``every_n_epochs`` or ``every_n_steps`` (at most one; neither: every epoch), for the callback named ``owner``."""

    def __init__(self, owner: str, every_n_epochs: int | None = None, every_n_steps: int | None = None):
        if every_n_epochs is not None and every_n_steps is not None:
            raise UserError(f"{owner} takes every_n_epochs or every_n_steps, not both; drop one of them.")
        for name, value in (("every_n_epochs", every_n_epochs), ("every_n_steps", every_n_steps)):
            if value is not None and value < 1:
                raise UserError(f"{owner} needs {name} ≥ 1, got {value}; set a positive count.")
        self.every_n_epochs = every_n_epochs or 1
        self.every_n_steps = every_n_steps
        self.scored_period = 0  # every_n_steps: the step period (global_step // every_n_steps) last scored

    def start(self, trainer: pl.Trainer) -> None:
        """At fit start: a resumed run's step periods count from the resumed step."""
        self.scored_period = trainer.global_step // self.every_n_steps if self.every_n_steps else 0

    def _scheduled(self, trainer: pl.Trainer) -> bool:
        if is_final_validation(trainer):
            return True
        if self.every_n_steps:
            return trainer.global_step // self.every_n_steps != self.scored_period
        return (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def due(self, trainer: pl.Trainer) -> bool:
        """Whether this validation scores (call once per validation epoch end; a due one is counted as scored)."""
        if trainer.sanity_checking:
            return False
        if trainer.state.fn != TrainerFn.FITTING:
            return True  # validate / test: the one validation there is
        reason = requested_validation(trainer)
        due = self._scheduled(trainer)
        if reason is not None and reason != END:  # an images.every_n_minutes validation stays cheap, unless the epoch's own
            due = due and bool(getattr(trainer.fit_loop.epoch_loop.batch_progress, "is_last_batch", False))
        due = due or reason == END
        if due and self.every_n_steps:
            self.scored_period = trainer.global_step // self.every_n_steps
        return due
