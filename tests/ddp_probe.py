"""A callback for the 2-process tests: each rank saves what it saw, for the test to compare across ranks.

Listed in trainer.callbacks by class path (the test puts tests/ on PYTHONPATH of the launched processes).
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch

from lightning_gen.callbacks.ema import EMA
from lightning_gen.compat import averaged_model
from lightning_gen.data.augment import step_generator


class Probe(pl.Callback):
    def __init__(self, out_dir: str):
        self.out_dir = Path(out_dir)
        self.seen: dict = {"metrics": {}}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 0 and "training_noise" not in self.seen:
            # The generators the model's training_step and the augmentation draw from at this batch.
            self.seen["training_noise"] = torch.randn(8, generator=pl_module.training_generator())
            self.seen["augmentation"] = torch.rand(8, generator=step_generator(0, trainer.global_step, torch.device("cpu")))
            self.seen["first_batch_index"] = batch["index"].clone()

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.seen["metrics"] = {key: float(value) for key, value in trainer.callback_metrics.items() if key.startswith("val/")}

    def on_fit_end(self, trainer, pl_module):
        ema = next((callback for callback in trainer.callbacks if isinstance(callback, EMA)), None)
        if ema is not None:
            self.seen["ema"] = {key: value.clone() for key, value in averaged_model(ema).module.state_dict().items()}
        self.seen["world_size"] = trainer.world_size
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(self.seen, self.out_dir / f"rank{trainer.global_rank}.pt")
