"""Training throughput of the VAE through `fit` with the default callbacks vs a plain PyTorch loop.

Three loops train the quickstart model (configs/quickstart.yaml) on the same in-memory shapes
images with the same batch size and optimizer: a plain PyTorch loop, a bare Lightning Trainer
(no callbacks, logger, checkpoints or validation: Lightning's own cost), and lightning_gen's fit
with its defaults (EMA, image grids, checkpoints, W&B offline). Train images/s count the
training batches of each epoch (each step's data loading, EMA update and logging included); the
end-of-epoch validation pass (which also makes the grids and saves the checkpoints) is timed on
its own, and the whole-fit wall time is printed too. Epoch 1 of each run is a warm-up and is
left out. The loops run back to back in rounds; the ratio to the plain loop is the median of the
per-round ratios.

    python benchmarks/train_loop.py [--epochs 4] [--repeats 5] [-- extra fit arguments]
"""

from __future__ import annotations

import argparse
import os
import statistics
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


def _config_args(root: Path, epochs: int, logger: str) -> list[str]:
    return ["--config", str(REPO / "configs/quickstart.yaml"), "--trainer.max_epochs", str(epochs),
            "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--tracking.logger", logger]


def framework_run(epochs: int, root: Path, extra: list[str]) -> tuple[float, float, float]:
    """lightning_gen fit with its default callbacks: (train images/s, whole fit wall s, end-of-epoch s)."""
    os.environ["WANDB_MODE"] = "offline"
    cli = GenerativeCLI(args=[*_config_args(root, epochs, "wandb"), *extra], run=False)
    timer = EpochTimer()
    cli.trainer.callbacks.append(timer)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    cli._finish_tracking()
    wall = time.perf_counter() - start
    validation = sum(timer.validation_seconds[1:]) / len(timer.validation_seconds[1:])
    return sum(timer.images[1:]) / sum(timer.seconds[1:]), wall, validation


def bare_lightning_run(epochs: int, root: Path) -> tuple[float, float]:
    """The same model and datamodule through a plain Lightning Trainer: no callbacks, logger, checkpoints or validation."""
    cli = GenerativeCLI(args=_config_args(root, epochs, "none"), run=False)
    timer = EpochTimer()
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=[timer])
    start = time.perf_counter()
    trainer.fit(cli.model, cli.datamodule)
    return sum(timer.images[1:]) / sum(timer.seconds[1:]), time.perf_counter() - start


def plain_run(epochs: int, root: Path) -> tuple[float, float, int]:
    cli = GenerativeCLI(args=_config_args(root, epochs, "none"), run=False)
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
    return sum(counts[1:]) / sum(seconds[1:]), time.perf_counter() - start_all, data.batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5, help="rounds of the three loops, run back to back")
    parser.add_argument("framework_args", nargs="*", help="extra fit arguments for the framework run, e.g. -- --ema.enabled false")
    args = parser.parse_args()
    plain, bare, framework = [], [], []
    with tempfile.TemporaryDirectory() as root:
        for repeat in range(args.repeats):
            plain.append(plain_run(args.epochs, Path(root) / f"p{repeat}"))
            bare.append(bare_lightning_run(args.epochs, Path(root) / f"b{repeat}"))
            framework.append(framework_run(args.epochs, Path(root) / f"r{repeat}", args.framework_args))
    batch = plain[0][2]
    # Each round runs the three loops within a minute of each other; the ratio within a round is
    # less exposed to the machine's drift (other tenants, clock changes) than a ratio of bests.
    bare_ratio = statistics.median(b[0] / p[0] for p, b in zip(plain, bare))
    framework_ratio = statistics.median(f[0] / p[0] for p, f in zip(plain, framework))

    def row(name: str, runs: list[tuple], ratio: float | None, end_of_epoch: str) -> str:
        best = max(run[0] for run in runs)
        relative = "1 (baseline)" if ratio is None else f"{ratio:.3f} ({(1 - ratio) * 100:+.1f} % slower)"
        return (f"| {name} | {best:,.0f} | {1000 * batch / best:.1f} | {relative} | {end_of_epoch} | "
                f"{min(run[1] for run in runs):.1f} |")

    print(f"\nVAE of configs/quickstart.yaml, 32×32 shapes, batch {batch}, {args.epochs} epochs (first left out), "
          f"{args.repeats} rounds, torch threads {torch.get_num_threads()}\n")
    print("| loop | train images/s (best round) | ms per step | throughput vs plain (median of rounds) "
          "| validation + grids + checkpoints per epoch (s) | whole run wall time (s) |")
    print("|---|---|---|---|---|---|")
    print(row("plain PyTorch loop", plain, None, "—"))
    print(row("Lightning Trainer, no callbacks/logger/validation", bare, bare_ratio, "—"))
    validation = min(run[2] for run in framework)
    print(row("lightning_gen fit (EMA, grids, checkpoints, W&B offline)", framework, framework_ratio, f"{validation:.2f}"))
    for name, runs in (("plain", plain), ("bare Lightning", bare), ("lightning_gen", framework)):
        print(f"{name} images/s per round: " + ", ".join(f"{run[0]:,.0f}" for run in runs))


if __name__ == "__main__":
    main()
