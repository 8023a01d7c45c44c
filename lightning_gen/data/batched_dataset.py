"""A dataset that serves whole batches from uint8 tensors (in memory or memory-mapped).

It implements ``__getitems__`` so the DataLoader fetches a batch with one fancy-index
instead of collating N single samples: the decode-once cache then costs one memory copy
and one uint8→float conversion per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


class BatchedImageDataset(Dataset):
    def __init__(
        self,
        images: np.ndarray | torch.Tensor,
        rows: Sequence[int] | np.ndarray,
        labels: np.ndarray | None = None,
        attributes: np.ndarray | None = None,
        captions: Sequence[str] | None = None,
    ):
        self.images = images
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = labels
        self.attributes = attributes
        self.captions = captions

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        batch = self.__getitems__([index])
        return {key: value[0] for key, value in batch.items()}

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Any]:
        positions = np.asarray(indices, dtype=np.int64)
        rows = self.rows[positions]
        order = np.argsort(rows, kind="stable")  # sorted reads are sequential on a memory map
        images = np.empty((len(rows), *self.images.shape[1:]), dtype=np.uint8)
        images[order] = np.asarray(self.images[rows[order]])
        batch: dict[str, Any] = {
            "image": torch.from_numpy(images).float().div_(255.0),
            "index": torch.from_numpy(rows.copy()),
        }
        if self.labels is not None:
            batch["label"] = torch.from_numpy(np.asarray(self.labels[rows], dtype=np.int64))
        if self.attributes is not None:
            batch["attributes"] = torch.from_numpy(np.asarray(self.attributes[rows], dtype=np.float32))
        if self.captions is not None:
            batch["caption"] = [self.captions[row] for row in rows]
        return batch


def keep_batch(batch: Any) -> Any:
    """collate_fn for BatchedImageDataset: the dataset already returns a collated batch."""
    return batch
