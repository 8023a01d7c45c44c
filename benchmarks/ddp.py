"""DDP scaling on CPU: training images/s of 2 processes × 1 thread vs 1 process × 1 thread, same global batch.

Runs ``python -m lightning_gen fit`` (Lightning's DDP launcher, gloo) on the quickstart VAE
(configs/quickstart.yaml) and the shapes DDPM (configs/shapes_ddpm.yaml), both on the built-in
shapes, with fewer images and epochs. The 1-process run uses the config's batch size B; the
2-process run B/2 per rank, so both take the same optimizer steps on the same global batch.
Training images/s is timed on rank 0 from the start to the end of each training epoch after the
first (warm-up), validation excluded; scaling efficiency = images/s(2 proc) / (2 × images/s(1 proc)).
The final validation metrics of the two runs are printed side by side: they agree statistically,
not bitwise (each rank draws its own noise and reads its own shard, so the batches differ).

    python benchmarks/ddp.py [--repeats 1] [--vae_images 3000] [--ddpm_images 1200] [--epochs 3] [--models vae ddpm]

``--plain`` adds the baseline of what gloo allows on this machine: the same VAE (quickstart's init args, no
latent prior) in a plain ``torch.nn.parallel.DistributedDataParallel`` loop (Adam, in-memory shapes, no
Lightning), 1 process × batch B vs 2 × B/2, epochs after the first timed the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

REPO = Path(__file__).resolve().parents[1]


class EpochTimer(pl.Callback):
    """Rank 0 writes the training seconds and images of each epoch, and the final validation metrics."""

    def __init__(self, out: str):
        self.out = Path(out)
        self.epochs: list[dict[str, float]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start, self._images, self._validation = time.perf_counter(), 0, 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._images += len(batch["image"]) * trainer.world_size  # every rank trains a batch of this size

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # The end-of-epoch validation runs before this hook; its time is taken out.
        self.epochs.append({"seconds": time.perf_counter() - self._start - self._validation, "images": self._images})

    def on_validation_start(self, trainer, pl_module) -> None:
        self._validation_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._validation += time.perf_counter() - self._validation_start

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            metrics = {key: float(value) for key, value in trainer.callback_metrics.items() if key.startswith("val/")}
            self.out.write_text(json.dumps({"epochs": self.epochs, "metrics": metrics}))


def fit(config: str, devices: int, batch_size: int, images: int, epochs: int, extra: list[str], workdir: Path) -> dict:
    out = workdir / f"timer-{Path(config).stem}-{devices}-{time.monotonic_ns()}.json"
    timer = json.dumps({"class_path": "ddp.EpochTimer", "init_args": {"out": str(out)}})
    env = {key: value for key, value in os.environ.items() if key not in ("WANDB_SERVICE", "LIGHTNING_GEN_RUN")}
    env.update(OMP_NUM_THREADS="1", WANDB_MODE="offline", PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "benchmarks")]))
    strategy = ["--trainer.strategy", "ddp"] if devices > 1 else []
    command = [
        sys.executable, "-m", "lightning_gen", "fit", "--config", str(REPO / config),
        "--trainer.accelerator", "cpu", "--trainer.devices", str(devices), *strategy,
        "--trainer.max_epochs", str(epochs), "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(workdir / "runs"), "--trainer.callbacks+", timer,
        "--data.init_args.num_images", str(images), "--data.init_args.batch_size", str(batch_size),
        "--tracking.logger", "none", "--images.every_n_epochs", "1000", *extra,
    ]  # fmt: skip
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(out.read_text())


def images_per_second(result: dict) -> float:
    timed = result["epochs"][1:]  # epoch 1 is a warm-up
    return sum(epoch["images"] for epoch in timed) / sum(epoch["seconds"] for epoch in timed)


class _Loss(torch.nn.Module):
    """DDP syncs gradients in its own forward: the loss must be computed inside it."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.losses({"image": images}, sample_latent=True)["loss"]


def _plain_worker(rank: int, world: int, port: int, batch: int, images: int, epochs: int, out: str) -> None:
    import yaml

    from lightning_gen.data import ShapesDataModule
    from lightning_gen.data.shapes_render import render_shapes
    from lightning_gen.models import BetaVAE

    torch.set_num_threads(1)
    torch.manual_seed(0)
    if world > 1:
        torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    init = yaml.safe_load((REPO / "configs/quickstart.yaml").read_text())["model"]["init_args"]
    facts = ShapesDataModule(image_size=32).facts
    model = BetaVAE(facts, **{key: init[key] for key in ("channels", "latent_dim", "reconstruction", "kl_weight")})
    loss_of = _Loss(model)
    wrapped = torch.nn.parallel.DistributedDataParallel(loss_of) if world > 1 else loss_of
    optimizer = torch.optim.Adam(model.parameters(), lr=init["optimizer"]["init_args"]["lr"])
    data = render_shapes(images, 32, 0).images.float().div(255)[rank::world]
    seconds, seen = [], []
    for epoch in range(epochs):
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(epoch))
        start = time.perf_counter()
        steps = len(data) // batch
        for step in range(steps):
            optimizer.zero_grad(set_to_none=True)
            wrapped(data[order[step * batch : (step + 1) * batch]]).backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
        seen.append(steps * batch * world)
    if rank == 0:
        Path(out).write_text(json.dumps({"epochs": [{"seconds": s, "images": n} for s, n in zip(seconds, seen)], "metrics": {}}))
    if world > 1:
        torch.distributed.destroy_process_group()


def plain(devices: int, batch_size: int, images: int, epochs: int, workdir: Path) -> dict:
    """The plain-PyTorch DDP baseline (see the module docstring); returns fit()'s result shape."""
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    out = workdir / f"plain-{devices}-{time.monotonic_ns()}.json"
    torch.multiprocessing.spawn(_plain_worker, (devices, port, batch_size, images, epochs, str(out)), nprocs=devices)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1, help="alternating 1- and 2-process runs per model")
    parser.add_argument("--vae_images", type=int, default=3000)
    parser.add_argument("--ddpm_images", type=int, default=1200)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--models", nargs="+", choices=("vae", "ddpm"), default=["vae", "ddpm"], help="which models to run")
    parser.add_argument("--plain", action="store_true", help="add a plain-PyTorch DDP loop of the same VAE (the gloo baseline)")
    args = parser.parse_args()
    models = [
        ("vae", "quickstart VAE", "configs/quickstart.yaml", args.vae_images, 64, []),
        # The LR schedule's total_steps follows the shortened run; validation grids would only add sampling time.
        ("ddpm", "shapes DDPM", "configs/shapes_ddpm.yaml", args.ddpm_images, 64,
         ["--model.init_args.lr_scheduler.init_args.total_steps", "1000", "--model.init_args.validation_steps", "2"]),
    ]  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for key, name, config, images, batch, extra in models:
            if key not in args.models:
                continue
            single, double = [], []
            for _ in range(args.repeats):
                single.append(fit(config, 1, batch, images, args.epochs, extra, Path(tmp)))
                double.append(fit(config, 2, batch // 2, images, args.epochs, extra, Path(tmp)))
            rows.append((name, batch, single, double))
            if key == "vae" and args.plain:
                single = [plain(1, batch, images, args.epochs, Path(tmp)) for _ in range(args.repeats)]
                double = [plain(2, batch // 2, images, args.epochs, Path(tmp)) for _ in range(args.repeats)]
                rows.append(("plain DDP VAE", batch, single, double))
    print(f"\nDDP on CPU (gloo), {os.cpu_count()} cores, 1 thread per process; global batch kept equal; epochs after the first timed\n")
    print(
        f"{'model':<16} {'global batch':>12} {'1 proc img/s':>13} {'2 proc img/s':>13} {'efficiency':>10}   "
        f"final validation 1 proc | 2 proc"
    )
    for name, batch, single, double in rows:
        one = sum(map(images_per_second, single)) / len(single)
        two = sum(map(images_per_second, double)) / len(double)
        metrics = sorted(single[-1]["metrics"])
        compared = ", ".join(
            f"{key} {single[-1]['metrics'][key]:.4g} | {double[-1]['metrics'].get(key, float('nan')):.4g}" for key in metrics
        )
        print(f"{name:<16} {batch:>12} {one:>13.1f} {two:>13.1f} {two / (2 * one):>9.0%}   {compared}")


if __name__ == "__main__":
    main()
