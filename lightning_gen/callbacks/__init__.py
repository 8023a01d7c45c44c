"""Callbacks written once against the model protocol (lightning_gen.protocol)."""

from lightning_gen.callbacks.ema import EMA
from lightning_gen.callbacks.image_grids import ImageGrids
from lightning_gen.callbacks.run_state import RunState

__all__ = ["EMA", "ImageGrids", "RunState"]
