"""A training DataLoader that Lightning can checkpoint in the middle of an epoch.

A Colab session dies mid-epoch; its last checkpoint comes from ``every_n_steps`` or
``every_n_minutes``. The batch order is a function of (seed, epoch), so the loader's whole state
is how many batches of the epoch the trainer has processed: after a restore its sampler skips that many
batches' indices (no image is loaded for them) and the run continues as if never stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import DataLoader


class ResumableDataLoader(DataLoader):
    """Its ``sampler`` has ``skip_once(samples)`` (lightning_gen.data.sampler): a resume skips whole batches of it."""

    def __init__(self, *args: Any, batches_processed: Callable[[], int], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._batches_processed = batches_processed

    def state_dict(self) -> dict[str, int]:
        return {"batches_processed": self._batches_processed()}

    def load_state_dict(self, state: dict[str, int]) -> None:
        batches = state.get("batches_processed", 0)
        if 0 < batches < len(self):  # a finished epoch resumes at the next one
            self.sampler.skip_once(batches * self.batch_size)
