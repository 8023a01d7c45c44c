"""A training DataLoader that Lightning can checkpoint in the middle of an epoch.

A Colab session dies mid-epoch; its last checkpoint comes from ``every_n_steps`` or
``every_n_minutes``. The batch order is a function of (seed, epoch), so the loader's whole state
is how many batches of the epoch the trainer has processed: after a restore it skips that many
batches by index (no image is loaded for them) and the run continues as if never stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

from torch.utils.data import BatchSampler, DataLoader, Sampler


class SkippingBatchSampler(BatchSampler):
    """torch's BatchSampler that, once, starts its next epoch ``skip`` batches in."""

    # Explicit arguments: Lightning re-creates batch samplers by name (e.g. for `predict`).
    def __init__(self, sampler: Sampler[int] | Iterable[int], batch_size: int, drop_last: bool):
        super().__init__(sampler, batch_size, drop_last)
        self._skip = 0

    def skip_once(self, batches: int) -> None:
        self._skip = batches if 0 < batches < len(self) else 0  # a finished epoch resumes at the next one

    def __iter__(self) -> Iterator[list[int]]:
        skip, self._skip = self._skip, 0
        return islice(super().__iter__(), skip, None)


class ResumableDataLoader(DataLoader):
    def __init__(self, *args: Any, batches_processed: Callable[[], int], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._batches_processed = batches_processed

    def state_dict(self) -> dict[str, int]:
        return {"batches_processed": self._batches_processed()}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batch_sampler.skip_once(state.get("batches_processed", 0))
