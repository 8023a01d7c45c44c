"""Train one classifier per (training data, real fraction, seed) and test it on the real held-out split.

Training data: ``real`` (a seeded fraction of the real training split), ``real + synthetic`` (the same
fraction plus the whole synthetic folder) and ``synthetic`` (the folder alone; it does not depend on
the fraction, so it is trained once per seed). A seed fixes the real subset, the initial weights and
the batch order, so ``real`` and ``real + synthetic`` of one seed differ only by the synthetic images.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from lightning_gen.callbacks.progress import progress_callbacks
from lightning_gen.console.progress import Progress
from lightning_gen.errors import UserError
from lightning_gen.synthetic.classifiers import ClassifierName, DownstreamClassifier, build_network

REAL, MIXED, SYNTHETIC = "real", "real + synthetic", "synthetic only"
TRAINING_DATA = (REAL, MIXED, SYNTHETIC)


class RealImages(Dataset):
    """(image, label) pairs of selected rows of a datamodule's split (items are batch dicts)."""

    def __init__(self, dataset: Dataset, rows: Sequence[int] | None = None):
        self.dataset = dataset
        self.rows = list(range(len(dataset))) if rows is None else list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int]:
        item = self.dataset[self.rows[position]]
        if "label" not in item:
            raise UserError("the real data of --config has no class labels; downstream needs a labelled dataset (e.g. ShapesDataModule).")
        return item["image"].float(), int(item["label"])


class TensorImages(Dataset):
    """(image in [0, 1], label) pairs from uint8 tensors, e.g. a synthetic folder read into memory."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int]:
        return self.images[position].float().div(255.0), int(self.labels[position])


def real_rows(total: int, fraction: float, seed: int) -> list[int]:
    if not 0.0 < fraction <= 1.0:
        raise UserError(f"--real_fraction values must be in (0, 1], got {fraction}.")
    count = max(1, round(total * fraction))
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:count].sort().values.tolist()


@dataclass
class ClassifierSetup:
    classifier: ClassifierName
    class_names: Sequence[str]
    image_size: int
    channels: int = 3
    lr: float = 2e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    num_workers: int = 0
    trainer_options: dict[str, Any] = field(default_factory=dict)
    judge_options: dict[str, Any] = field(default_factory=dict)


def train_and_test(train_set: Dataset, test_set: Dataset, setup: ClassifierSetup, seed: int) -> float:
    """Accuracy on ``test_set`` of a classifier trained from scratch on ``train_set``."""
    pl.seed_everything(seed, verbose=False)
    network = build_network(setup.classifier, setup.class_names, setup.image_size, setup.channels, setup.judge_options)
    module = DownstreamClassifier(network, len(setup.class_names), setup.lr, setup.weight_decay)
    train_loader = DataLoader(
        train_set, batch_size=setup.batch_size, shuffle=True, num_workers=setup.num_workers, generator=torch.Generator().manual_seed(seed)
    )
    test_loader = DataLoader(test_set, batch_size=256, num_workers=setup.num_workers)
    # The classifier is only ever tested at the end, on the real held-out split: no validation loop.
    lines = progress_callbacks(None, [])  # step lines in a pipe (a ResNet-18 on a CPU trains for minutes); no bar
    owned = {
        "logger": False,
        "enable_checkpointing": False,
        "enable_model_summary": False,
        "enable_progress_bar": bool(lines),
        "num_sanity_val_steps": 0,
        "limit_val_batches": 0,
        "callbacks": lines,
    }
    with quiet_lightning():  # dozens of classifiers: not "GPU available: …" and "max_steps reached" for each
        trainer = pl.Trainer(**{"accelerator": "auto", "devices": 1, **setup.trainer_options, **owned})
        trainer.fit(module, train_loader)
        return float(trainer.test(module, test_loader, verbose=False)[0]["test/accuracy"])


@contextmanager
def quiet_lightning():
    """Lightning's info messages off (warnings stay) while the block runs."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def run_downstream(
    real_train: Dataset,  # a datamodule split (batch-dict items); subsets of it are drawn per seed
    real_test: Dataset,
    synthetic: Dataset,
    fractions: Sequence[float],
    seeds: int,
    setup: ClassifierSetup,
    report: Callable[[dict[str, Any]], None] = lambda row: None,
) -> list[dict[str, Any]]:
    """One row per trained classifier: training data, real fraction (None for synthetic only), seed, sizes, accuracy."""
    rows = []
    progress = Progress("downstream classifiers", seeds * (1 + 2 * len(fractions)), "classifiers", every=0)

    def train(data: str, fraction: float | None, seed: int, real: Dataset | None) -> None:
        parts = [part for part in (real, synthetic if data != REAL else None) if part is not None]
        accuracy = train_and_test(parts[0] if len(parts) == 1 else ConcatDataset(parts), real_test, setup, seed)
        row = {
            "training_data": data,
            "real_fraction": fraction,
            "seed": seed,
            "real_images": len(real) if real is not None else 0,
            "synthetic_images": len(synthetic) if data != REAL else 0,
            "test_images": len(real_test),
            "accuracy": accuracy,
        }
        rows.append(row)
        report(row)
        progress.update()

    for seed in range(seeds):
        train(SYNTHETIC, None, seed, None)
        for fraction in fractions:
            subset = RealImages(real_train, real_rows(len(real_train), fraction, seed))
            train(REAL, fraction, seed, subset)
            train(MIXED, fraction, seed, subset)
    progress.close()
    return rows
