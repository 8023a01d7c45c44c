"""The shapes' pixels on demand: a row is rendered the first time a batch asks for it, then kept.

A smoke run (``--trainer.fast_dev_run 1``) touches two batches, so it no longer waits for all 8,000
images; a full run renders each row once in its first epoch, the same pixels as ``render_shapes``.
"""

from __future__ import annotations

import numpy as np
import torch

from lightning_gen.data.shapes_render import ShapeParameters, render_rows


class LazyShapeImages:
    """An N×3×H×W uint8 array-like: ``images[rows]`` renders the rows not seen before and returns them."""

    def __init__(self, params: ShapeParameters, image_size: int):
        self.params = params
        self.shape = (len(params.shape), 3, image_size, image_size)
        self.dtype = np.dtype(np.uint8)
        self._pixels = np.empty(self.shape, dtype=np.uint8)
        self._rendered = np.zeros(len(params.shape), dtype=bool)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        wanted = np.atleast_1d(np.arange(len(self))[rows])
        missing = np.unique(wanted[~self._rendered[wanted]])
        if len(missing):
            self._pixels[missing] = render_rows(self.params, torch.from_numpy(missing), self.shape[2]).numpy()
            self._rendered[missing] = True
        return self._pixels[rows]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        pixels = self[:]
        return pixels if dtype is None else pixels.astype(dtype)
