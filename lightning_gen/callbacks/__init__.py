"""Callbacks written once against the model protocol (lightning_gen.protocol).

Each is importable from here (``lightning_gen.callbacks.JudgeScore`` in a config's ``trainer.callbacks``).
"""

from lightning_gen.callbacks.ema import EMA
from lightning_gen.callbacks.image_grids import ImageGrids
from lightning_gen.callbacks.judge_score import JudgeScore
from lightning_gen.callbacks.run_state import RunState

__all__ = ["EMA", "ImageGrids", "JudgeScore", "RunState"]
