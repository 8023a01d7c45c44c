"""Saving a ≥ 1 GB checkpoint: peak extra host memory and seconds, lightning_gen's CheckpointIO vs Lightning's.

The checkpoint is shaped like a training checkpoint (model weights, EMA weights, two Adam moment
tensors per parameter, a few scalars), all fp32 on the CPU. Each save runs in its own fresh process,
so one save's peak cannot hide another's: the process builds the checkpoint, records its resident
memory, saves, and reports how far the peak resident memory (VmHWM) rose above that during the save.
Both write to the same directory; the file is read back and compared before it counts.

    python benchmarks/checkpoint_io.py [--gigabytes 1.2] [--directory DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def memory_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def build_checkpoint(gigabytes: float) -> dict:
    import torch

    parameter_elements = int(gigabytes * 2**30 / 4 / 4)  # weights, EMA, exp_avg, exp_avg_sq
    sizes = [4 * 2**20] * (parameter_elements // (4 * 2**20))  # 16 MiB fp32 tensors, like a big UNet's convs
    generator = torch.Generator().manual_seed(0)
    weights = {f"layer{i}.weight": torch.randn(n, generator=generator) for i, n in enumerate(sizes)}
    return {
        "epoch": 3,
        "global_step": 1000,
        "state_dict": {name: tensor * 0.5 for name, tensor in weights.items()},
        "current_model_state": weights,
        "optimizer_states": [
            {
                "state": {
                    i: {"step": torch.tensor(1000.0), "exp_avg": torch.zeros(n), "exp_avg_sq": torch.ones(n)} for i, n in enumerate(sizes)
                },
                "param_groups": [{"lr": 1e-4, "params": list(range(len(sizes)))}],
            }
        ],
    }


def checkpoint_bytes(checkpoint: dict) -> int:
    import torch

    total = 0
    stack = [checkpoint]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            total += item.numel() * item.element_size()
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return total


def measure_one(which: str, gigabytes: float, directory: Path) -> dict:
    """Runs in a child process: build, save with ``which``, report."""
    import torch
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from lightning_gen.checkpoints.files import AtomicStreamingCheckpointIO

    torch.set_num_threads(1)
    checkpoint = build_checkpoint(gigabytes)
    io = AtomicStreamingCheckpointIO() if which == "lightning_gen" else TorchCheckpointIO()
    path = directory / f"{which}.ckpt"
    before = memory_kib("VmRSS")
    assert memory_kib("VmHWM") <= before + 64 * 1024, "building the checkpoint left a peak above the current RSS"
    start = time.perf_counter()
    io.save_checkpoint(checkpoint, path)
    seconds = time.perf_counter() - start
    peak = memory_kib("VmHWM")
    loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    name = next(iter(checkpoint["state_dict"]))
    assert torch.equal(loaded["state_dict"][name], checkpoint["state_dict"][name])
    size = path.stat().st_size
    path.unlink()
    return {
        "which": which,
        "checkpoint_bytes": checkpoint_bytes(checkpoint),
        "file_bytes": size,
        "extra_peak_bytes": max(0, peak - before) * 1024,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.2)
    parser.add_argument("--directory", type=Path, default=None, help="where the files are written (default: a temporary folder)")
    parser.add_argument("--child", choices=["lightning_gen", "lightning"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_one(args.child, args.gigabytes, args.directory)))
        return
    with tempfile.TemporaryDirectory(dir=args.directory) as directory:
        rows = []
        for which in ("lightning", "lightning_gen"):
            result = subprocess.run(
                [sys.executable, __file__, "--child", which, "--gigabytes", str(args.gigabytes), "--directory", directory],
                capture_output=True,
                text=True,
                check=True,
                cwd=REPO,
            )
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    gib = 2**30
    print(
        f"Saving a {rows[0]['checkpoint_bytes'] / gib:.2f} GiB checkpoint (file "
        f"{rows[0]['file_bytes'] / gib:.2f} GiB), one run each, fresh process each:\n"
    )
    print("| CheckpointIO | peak extra RSS during save | as % of checkpoint | seconds |")
    print("| --- | ---: | ---: | ---: |")
    labels = {"lightning": "Lightning TorchCheckpointIO (default)", "lightning_gen": "lightning_gen AtomicStreamingCheckpointIO"}
    for row in rows:
        print(
            f"| {labels[row['which']]} | {row['extra_peak_bytes'] / gib:.3f} GiB | "
            f"{100 * row['extra_peak_bytes'] / row['checkpoint_bytes']:.1f} % | {row['seconds']:.2f} |"
        )


if __name__ == "__main__":
    main()
