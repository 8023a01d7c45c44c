"""DDP scaling on CPU: training images/s of 2 processes × 1 thread vs 1 process × 1 thread, and where a step's time goes.

Runs ``python -m lightning_gen fit`` (Lightning's DDP launcher, gloo) on the quickstart VAE
(configs/quickstart.yaml) and the shapes DDPM (configs/shapes_ddpm.yaml), both on the built-in
shapes, with fewer images and epochs. For the config's batch B, four runs per round, interleaved:
1 × B, 1 × B/2, 2 × B/2 and 2 × B (processes × batch per process). Strong scaling (the same global batch,
the same optimizer steps) = images/s(2 × B/2) / (2 × images/s(1 × B)); it splits into the effect of the
smaller batch on one process (1 × B/2 vs 1 × B) and DDP's own cost at B/2 per process. Weak scaling =
2 × B vs 1 × B. Training images/s is timed on rank 0 from the start to the end of each training epoch
after the first (warm-up), validation excluded; each run also reports its milliseconds per step in
forward / backward (which under DDP waits for the gradient all-reduce) / optimizer + callbacks / between
steps. The final validation metrics of 1 × B and 2 × B/2 are printed side by side: they agree
statistically, not bitwise (each rank draws its own noise and reads its own shard).

    python benchmarks/ddp.py [--repeats 1] [--vae_images 3000] [--ddpm_images 1200] [--epochs 3] [--models vae ddpm]

``--plain`` adds the baseline of what gloo allows on this machine: the same VAE (quickstart's init args, no
latent prior) in a plain ``torch.nn.parallel.DistributedDataParallel`` loop (Adam, in-memory shapes, no
Lightning), the same four runs timed the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import torch

REPO = Path(__file__).resolve().parents[1]


class EpochTimer(pl.Callback):
    """Rank 0 writes the training seconds and images of each epoch, the final validation metrics, and where a
    timed step's milliseconds go: forward (training_step), backward (under DDP it waits for the gradient
    all-reduce), optimizer step with the callbacks after it (EMA), and between steps (data, Lightning's loop)."""

    PHASES = ("forward", "backward", "optimizer", "between")

    def __init__(self, out: str):
        self.out = Path(out)
        self.epochs: list[dict[str, float]] = []
        self.phases = dict.fromkeys(self.PHASES, 0.0)
        self.steps = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start, self._images, self._validation = time.perf_counter(), 0, 0.0
        self._timed, self._mark = trainer.current_epoch >= 1, None  # epoch 1 is a warm-up

    def _phase(self, ended: str | None) -> None:
        now = time.perf_counter()
        if ended is not None and self._mark is not None and self._timed:
            self.phases[ended] += now - self._mark
        self._mark = now

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._phase("between")
        self.steps += self._timed

    def on_before_zero_grad(self, trainer, pl_module, optimizer) -> None:
        self._phase("forward")  # automatic optimization zeroes the gradients after training_step

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._phase(None)

    def on_after_backward(self, trainer, pl_module) -> None:
        self._phase("backward")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._phase("optimizer")
        self._images += len(batch["image"]) * trainer.world_size  # every rank trains a batch of this size

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # The end-of-epoch validation runs before this hook; its time is taken out.
        self.epochs.append({"seconds": time.perf_counter() - self._start - self._validation, "images": self._images})
        self._mark = None

    def on_validation_start(self, trainer, pl_module) -> None:
        self._validation_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._validation += time.perf_counter() - self._validation_start

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            metrics = {key: float(value) for key, value in trainer.callback_metrics.items() if key.startswith("val/")}
            phases = {key: 1000 * value / max(self.steps, 1) for key, value in self.phases.items()}
            self.out.write_text(json.dumps({"epochs": self.epochs, "metrics": metrics, "phases_ms": phases}))


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
    seconds, seen, phases, timed = [], [], dict.fromkeys(EpochTimer.PHASES, 0.0), 0
    for epoch in range(epochs):
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(epoch))
        start = time.perf_counter()
        steps = len(data) // batch
        for step in range(steps):
            begin = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss = wrapped(data[order[step * batch : (step + 1) * batch]])
            forward = time.perf_counter()
            loss.backward()
            backward = time.perf_counter()
            optimizer.step()
            if epoch >= 1:
                timed += 1
                phases["forward"] += forward - begin
                phases["backward"] += backward - forward
                phases["optimizer"] += time.perf_counter() - backward
        seconds.append(time.perf_counter() - start)
        seen.append(steps * batch * world)
    if rank == 0:
        epochs_run = [{"seconds": s, "images": n} for s, n in zip(seconds, seen)]
        phases_ms = {key: 1000 * value / max(timed, 1) for key, value in phases.items()}
        Path(out).write_text(json.dumps({"epochs": epochs_run, "metrics": {}, "phases_ms": phases_ms}))
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


def _mean_rate(results: list[dict]) -> float:
    return sum(map(images_per_second, results)) / len(results)


def _phases(results: list[dict]) -> str:
    keys = EpochTimer.PHASES
    means = {key: sum(result["phases_ms"].get(key, 0.0) for result in results) / len(results) for key in keys}
    return "/".join(f"{means[key]:.1f}" for key in keys)


def rounds(run, batch: int, repeats: int) -> dict[tuple[int, int], list[dict]]:
    """``repeats`` interleaved rounds of four runs ``run(processes, batch per process)`` for a config batch B:
    1×B, 1×B/2, 2×B/2 (strong scaling: global batch B) and 2×B (weak scaling)."""
    runs: dict[tuple[int, int], list[dict]] = {shape: [] for shape in [(1, batch), (1, batch // 2), (2, batch // 2), (2, batch)]}
    for _ in range(repeats):
        for devices, per_rank in runs:
            runs[devices, per_rank].append(run(devices, per_rank))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1, help="rounds of the four runs per model, interleaved")
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
    tables = []
    with tempfile.TemporaryDirectory() as tmp:
        for key, name, config, images, batch, extra in models:
            if key not in args.models:
                continue
            common = {"images": images, "epochs": args.epochs, "workdir": Path(tmp)}
            tables.append((name, batch, rounds(partial(fit, config, extra=extra, **common), batch, args.repeats)))
            if key == "vae" and args.plain:
                tables.append(("plain DDP VAE", batch, rounds(partial(plain, **common), batch, args.repeats)))
    print(f"\nDDP on CPU (gloo), {os.cpu_count()} cores, 1 thread per process; epochs after the first timed")
    print("ms per step: forward / backward (incl. waiting for the gradient all-reduce) / optimizer + callbacks / between steps\n")
    print(f"{'model':<16} {'scaling':<34} {'img/s':>16} {'efficiency':>10}   ms per step, rank 0")
    for name, batch, runs in tables:
        half = batch // 2
        rate = {shape: _mean_rate(results) for shape, results in runs.items()}
        rows = [
            (f"strong: 2×{half} vs 1×{batch}", (2, half), (1, batch), rate[2, half] / (2 * rate[1, batch])),
            (f"  batch {half} vs {batch} on 1 process", (1, half), (1, batch), rate[1, half] / rate[1, batch]),
            (f"  DDP at {half} per process", (2, half), (1, half), rate[2, half] / (2 * rate[1, half])),
            (f"weak: 2×{batch} vs 1×{batch}", (2, batch), (1, batch), rate[2, batch] / (2 * rate[1, batch])),
        ]
        for label, new, old, efficiency in rows:
            rates = f"{rate[new]:.0f} vs {rate[old]:.0f}"
            print(f"{name:<16} {label:<34} {rates:>16} {efficiency:>9.0%}   {_phases(runs[new])} vs {_phases(runs[old])}")
        single, double = runs[1, batch][-1]["metrics"], runs[2, half][-1]["metrics"]
        if single:
            compared = ", ".join(f"{key} {single[key]:.4g} | {double.get(key, float('nan')):.4g}" for key in sorted(single))
            print(f"{name:<16} final validation, 1×{batch} | 2×{half}: {compared}")


if __name__ == "__main__":
    main()
