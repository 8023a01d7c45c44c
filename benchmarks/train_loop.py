"""Training throughput of the VAE through `fit` with the default callbacks vs a plain PyTorch loop.

The quickstart model (configs/quickstart.yaml) trains on the in-memory shapes images three ways:
a plain PyTorch loop (its own copy of the model and optimizer, same batch size and images), a
bare Lightning Trainer (no callbacks, logger, checkpoints or validation: Lightning's own cost),
and lightning_gen's fit with its defaults (EMA, image grids, checkpoints, W&B offline).

This machine's speed drifts by several per cent from one minute to the next (shared cores), more
than the difference being measured, so separate runs cannot be compared. Instead the baseline
runs inside each Lightning run, step for step: after every training step of the fit one plain
step runs (outside the fit's timing), and the two are summed over the same minutes. A fit step
includes its data loading, Lightning's loop, logging and the EMA update; the end-of-epoch
validation pass (which also makes the grids and saves the checkpoints) is timed on its own.
Epoch 1 of each run is a warm-up and is left out.

    python benchmarks/train_loop.py [--epochs 4] [--repeats 3] [-- extra fit arguments]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

from lightning_gen.cli import GenerativeCLI

REPO = Path(__file__).resolve().parents[1]


class PlainLoop:
    """The baseline: forward, backward and optimizer step over in-memory batches, nothing else."""

    def __init__(self, model: pl.LightningModule, images: torch.Tensor, batch_size: int):
        self.model = copy.deepcopy(model)
        self.optimizer = self.model.configure_optimizers()  # the config's optimizer (quickstart: Adam, no scheduler)
        self.images = images
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(0)  # leaves the fit's random streams alone
        self.batches: list[torch.Tensor] = []

    def step(self) -> float:
        """One training step; returns its seconds."""
        start = time.perf_counter()
        if not self.batches:  # a new epoch of the plain loop
            order = torch.randperm(len(self.images), generator=self.generator)
            self.batches = list(order[: len(order) - len(order) % self.batch_size].split(self.batch_size))
        self.model.train()
        with torch.enable_grad():
            batch = {"image": self.images[self.batches.pop()]}
            loss = self.model.losses(batch, sample_latent=True)["loss"]
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return time.perf_counter() - start


class InterleavedTimer(pl.Callback):
    """After every training step of the fit, one plain-loop step runs (outside the fit's timing).

    A fit step is timed from the end of the previous plain step to the end of its own last
    ``on_train_batch_end`` hook (this callback goes last), so it includes fetching the batch,
    Lightning's loop, logging and the EMA update. The end-of-epoch validation pass (which also
    makes the grids and saves the checkpoints) falls outside every step and is timed on its own.
    """

    def __init__(self, plain: PlainLoop) -> None:
        self.plain = plain
        self.plain_seconds: list[float] = []
        self.fit_seconds: list[float] = []
        self.validation_seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._mark = time.perf_counter()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._validation_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and trainer.current_epoch >= 1:
            self.validation_seconds.append(time.perf_counter() - self._validation_start)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        fit = time.perf_counter() - self._mark
        plain = self.plain.step()
        if trainer.current_epoch >= 1:  # epoch 1 is a warm-up for both
            self.fit_seconds.append(fit)
            self.plain_seconds.append(plain)
        self._mark = time.perf_counter()


def _cli(root: Path, epochs: int, logger: str, extra: list[str] = ()) -> GenerativeCLI:
    return GenerativeCLI(
        args=[
            "--config",
            str(REPO / "configs/quickstart.yaml"),
            "--trainer.max_epochs",
            str(epochs),
            "--trainer.default_root_dir",
            str(root),
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.enable_model_summary",
            "false",
            "--tracking.logger",
            logger,
            *extra,
        ],
        run=False,
    )


def _timer_for(cli: GenerativeCLI) -> InterleavedTimer:
    data = cli.datamodule
    data.setup("fit")
    images = data.train_set.__getitems__(list(range(len(data.train_set))))["image"]
    return InterleavedTimer(PlainLoop(cli.model, images, data.batch_size))


def framework_run(epochs: int, root: Path, extra: list[str]) -> tuple[InterleavedTimer, float]:
    """lightning_gen fit with its default callbacks; returns the timer and the whole fit's wall time."""
    os.environ["WANDB_MODE"] = "offline"
    cli = _cli(root, epochs, "wandb", extra)
    timer = _timer_for(cli)
    cli.trainer.callbacks.append(timer)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    cli._finish_tracking()
    return timer, time.perf_counter() - start


def bare_lightning_run(epochs: int, root: Path) -> tuple[InterleavedTimer, float]:
    """The same model and datamodule through a Lightning Trainer with no callbacks, logger, checkpoints or validation."""
    cli = _cli(root, epochs, "none")
    timer = _timer_for(cli)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[timer],
    )
    start = time.perf_counter()
    trainer.fit(cli.model, cli.datamodule)
    return timer, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each Lightning loop, alternating")
    parser.add_argument("framework_args", nargs="*", help="extra fit arguments for the framework run, e.g. -- --ema.enabled false")
    args = parser.parse_args()
    runs: dict[str, list[tuple[InterleavedTimer, float]]] = {"bare": [], "framework": []}
    with tempfile.TemporaryDirectory() as root:
        for repeat in range(args.repeats):
            runs["bare"].append(bare_lightning_run(args.epochs, Path(root) / f"b{repeat}"))
            runs["framework"].append(framework_run(args.epochs, Path(root) / f"f{repeat}", args.framework_args))
    batch = runs["framework"][0][0].plain.batch_size

    def rate(seconds: list[float]) -> float:
        return batch * len(seconds) / sum(seconds)

    def row(name: str, kind: str) -> str:
        timers = [timer for timer, _ in runs[kind]]
        fit = [s for timer in timers for s in timer.fit_seconds]
        plain = [s for timer in timers for s in timer.plain_seconds]
        ratio = rate(fit) / rate(plain)
        per_run = ", ".join(f"{rate(t.fit_seconds) / rate(t.plain_seconds):.3f}" for t in timers)
        validation = [s for timer in timers for s in timer.validation_seconds]
        end_of_epoch = f"{statistics.median(validation):.2f}" if validation else "—"
        wall = min(wall for _, wall in runs[kind])
        return (
            f"| {name} | {rate(fit):,.0f} | {rate(plain):,.0f} | {ratio:.3f} ({(1 - ratio) * 100:+.1f} % slower; "
            f"runs {per_run}) | {1000 * (sum(fit) - sum(plain)) / len(fit):+.2f} | {end_of_epoch} | {wall:.1f} |"
        )

    print(
        f"\nVAE of configs/quickstart.yaml, 32×32 shapes, batch {batch}, {args.epochs} epochs per run (first left out), "
        f"{args.repeats} runs of each, torch threads {torch.get_num_threads()}\n"
    )
    print(
        "| loop | train images/s | plain loop images/s, interleaved | ratio | ms per step added "
        "| validation + grids + checkpoints per epoch (s) | wall time incl. plain steps (s) |"
    )
    print("|---|---|---|---|---|---|---|")
    print(row("Lightning Trainer, no callbacks/logger/validation", "bare"))
    print(row("lightning_gen fit (EMA, grids, checkpoints, W&B offline)", "framework"))


if __name__ == "__main__":
    main()
