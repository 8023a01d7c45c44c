"""Training throughput of the VAE through `fit` with the default callbacks vs a plain PyTorch loop.

Both train the quickstart model (configs/quickstart.yaml) on the same in-memory shapes images
with the same batch size and optimizer. The framework run has EMA, image grids, checkpoints
and W&B (offline) on; its throughput counts the training epochs (each step's EMA update and
logging included), and the whole-fit wall time (validation, grids, checkpoints) is printed too.
Epoch 1 of each is a warm-up and is left out of the images/s.

    python benchmarks/train_loop.py [--epochs 4] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

from lightning_gen.cli import GenerativeCLI

REPO = Path(__file__).resolve().parents[1]


class EpochTimer(pl.Callback):
    """Training time per epoch without the end-of-epoch validation pass (timed on its own: it also
    makes the grids and saves the checkpoints, work the plain loop does not do)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.images: list[int] = []
        self.validation_seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start, self._count, self._validation = time.perf_counter(), 0, 0.0

    def on_validation_start(self, trainer, pl_module) -> None:
        self._validation_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._validation += time.perf_counter() - self._validation_start

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._count += len(batch["image"])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(time.perf_counter() - self._start - self._validation)
        self.validation_seconds.append(self._validation)
        self.images.append(self._count)


def framework_run(epochs: int, root: Path, extra: list[str]) -> tuple[float, float, float]:
    os.environ["WANDB_MODE"] = "offline"
    cli = GenerativeCLI(
        args=["--config", str(REPO / "configs/quickstart.yaml"), "--trainer.max_epochs", str(epochs),
              "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false", "--tracking.logger", "wandb", *extra],
        run=False,
    )
    timer = EpochTimer()
    cli.trainer.callbacks.append(timer)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    cli._finish_tracking()
    wall = time.perf_counter() - start
    validation = sum(timer.validation_seconds[1:]) / len(timer.validation_seconds[1:])
    return sum(timer.images[1:]) / sum(timer.seconds[1:]), wall, validation


def plain_run(epochs: int) -> tuple[float, float]:
    cli = GenerativeCLI(args=["--config", str(REPO / "configs/quickstart.yaml"), "--tracking.logger", "none",
                              "--trainer.default_root_dir", tempfile.mkdtemp()], run=False)
    model, data = cli.model, cli.datamodule
    data.setup("fit")
    images = data.train_set.__getitems__(list(range(len(data.train_set))))["image"]
    optimizer = torch.optim.Adam(model.parameters(), lr=0.002)
    model.train()
    seconds, counts = [], []
    start_all = time.perf_counter()
    for epoch in range(epochs):
        start, count = time.perf_counter(), 0
        order = torch.randperm(len(images))
        for first in range(0, len(images) - data.batch_size + 1, data.batch_size):
            batch = {"image": images[order[first : first + data.batch_size]]}
            loss = model.losses(batch, sample_latent=True)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            count += len(batch["image"])
        seconds.append(time.perf_counter() - start)
        counts.append(count)
    return sum(counts[1:]) / sum(seconds[1:]), time.perf_counter() - start_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each; the best of each is reported")
    parser.add_argument("framework_args", nargs="*", help="extra fit arguments for the framework run, e.g. -- --ema.enabled false")
    args = parser.parse_args()
    plain, framework = [], []
    with tempfile.TemporaryDirectory() as root:
        for repeat in range(args.repeats):
            plain.append(plain_run(args.epochs))
            framework.append(framework_run(args.epochs, Path(root) / f"r{repeat}", args.framework_args))
    best_plain, best_framework = max(plain), max(framework)
    print(f"\nVAE of configs/quickstart.yaml, 32×32 shapes, batch 64, {args.epochs} epochs (first left out), "
          f"best of {args.repeats}, torch threads {torch.get_num_threads()}\n")
    print("| loop | train images/s | validation + grids + checkpoints per epoch (s) | whole run wall time (s) |")
    print("|---|---|---|---|")
    print(f"| plain PyTorch loop (no validation) | {best_plain[0]:,.0f} | — | {best_plain[1]:.1f} |")
    print(f"| lightning_gen fit (EMA, grids, checkpoints, W&B offline) | {best_framework[0]:,.0f} | {best_framework[2]:.2f} | {best_framework[1]:.1f} |")
    print(f"\nframework / plain throughput: {best_framework[0] / best_plain[0]:.3f} "
          f"({(1 - best_framework[0] / best_plain[0]) * 100:+.1f} % slower)")


if __name__ == "__main__":
    main()
