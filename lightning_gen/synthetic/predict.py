"""Export through Lightning's predict loop: more devices (``--trainer.devices``) split the images between them.

Each rank generates and writes its share of the pending images; file names come from the plan, so ranks
never collide, and the writes are atomic (temp file + rename), so a killed export leaves no half images.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset
from torchvision.io import encode_png

from lightning_gen.checkpoints.files import replace_file
from lightning_gen.console.progress import Progress
from lightning_gen.synthetic.generate import PerImageSampler, to_uint8
from lightning_gen.synthetic.plan import ExportItem


class PendingImages(Dataset):
    """Positions into the list of images still to write; the module looks the items up."""

    def __init__(self, items: Sequence[ExportItem]):
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, position: int) -> int:
        return position


class ExportModule(pl.LightningModule):
    """A thin predict-only wrapper: the generative model (with its EMA weights) and the pending items."""

    def __init__(self, model: pl.LightningModule, items: Sequence[ExportItem], options: dict[str, Any], batch_size: int):
        super().__init__()
        self.model = model
        self.items = list(items)
        self.options = options
        self.batch_size = batch_size
        self.sampler: PerImageSampler | None = None

    def on_predict_start(self) -> None:
        # Built here, once the model sits on this rank's device (the latent size is read by one encoding).
        self.sampler = PerImageSampler(self.model, self.options)

    def predict_step(self, batch: torch.Tensor, batch_idx: int) -> dict[str, Any]:
        items = [self.items[position] for position in batch.tolist()]
        images = self.sampler.images([item.noise_seed for item in items], [item.condition for item in items], pad_to=self.batch_size)
        return {"items": items, "images": to_uint8(images)}


class ImageWriter(BasePredictionWriter):
    """Writes each batch's PNGs as they come; rank 0 shows images/s for all ranks together and, once every
    rank is done, calls ``when_all_written`` (which writes the metadata)."""

    def __init__(self, root: Path, total: int, when_all_written: Callable[[], None]):
        super().__init__(write_interval="batch")
        self.root = Path(root)
        self.total = total
        self.when_all_written = when_all_written
        self.seconds = 0.0
        self.progress: Progress | None = None
        self.written = 0

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self.progress = Progress(f"export to {self.root}", total=self.total, unit="img")
        self.started = time.perf_counter()

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx) -> None:
        for item, image in zip(prediction["items"], prediction["images"]):
            path = self.root / item.file_name
            path.parent.mkdir(parents=True, exist_ok=True)
            replace_file(path, encode_png(image).numpy().tobytes())  # atomic; two writers never share a temporary
        self.written += len(prediction["items"])
        if self.progress is not None:
            # Every rank writes an equal share (the distributed sampler pads the last one).
            self.progress.update(min(len(prediction["items"]) * trainer.world_size, self.total - self.progress.done))

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds = time.perf_counter() - self.started
        if self.progress is not None:
            self.progress.close()
        trainer.strategy.barrier("export_images_written")
        if trainer.is_global_zero:
            self.when_all_written()


def predict_images(
    model: pl.LightningModule,
    root: Path,
    pending: Sequence[ExportItem],
    options: dict[str, Any],
    batch_size: int,
    when_all_written: Callable[[], None],
    trainer_options: dict[str, Any] | None = None,
) -> float:
    """Generates and writes ``pending``, then ``when_all_written()`` on rank 0; returns the seconds spent generating."""
    if not pending:
        when_all_written()
        return 0.0
    writer = ImageWriter(root, len(pending), when_all_written)
    owned = {
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "callbacks": [writer],
    }
    trainer = pl.Trainer(**{"accelerator": "auto", "devices": 1, **(trainer_options or {}), **owned})
    loader = DataLoader(PendingImages(pending), batch_size=batch_size, shuffle=False)
    trainer.predict(ExportModule(model, pending, options, batch_size), dataloaders=loader, return_predictions=False)
    return writer.seconds
