"""The Imagen preset (configs/nabirds_imagen.yaml, ~986M-parameter UNet) as shipped: peak RSS, file sizes, save times.

Trains the preset for 2 steps on a NABirds-layout fixture (tests/fixtures_nabirds.py's) with a tiny local T5
in place of T5 v1.1 large (no download), in a fresh process, then prints the peak resident memory of
training alone and of the whole run (saves included), and every checkpoint file written with its size
and save time. Snapshots are taken every step here (the preset takes one every 2000) so their size and
time are measured too.

    python benchmarks/imagen_preset_memory.py                     # the full preset: ~20 GB of RAM, minutes on a CPU
    python benchmarks/imagen_preset_memory.py -- --model.init_args.unet.block_out_channels '[32,64,64,64]' \\
        --model.init_args.unet.layers_per_block '[1,1,1,1]' --model.init_args.unet.norm_num_groups 8   # a shrunk check
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

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["Allen's Hummingbird (Adult Male)", "Allen's Hummingbird (Female, immature)"]


def kib(field: str) -> int:
    return next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field + ":"))


def child(workdir: Path, overrides: list[str]) -> None:
    """Runs in a fresh process: fit with every file write timed."""
    import torch

    from lightning_gen.checkpoints.loading import files as checkpoint_io
    from lightning_gen.checkpoints.loading import snapshots as weight_snapshots
    from lightning_gen.cli import main
    from lightning_gen.text.tiny_t5 import build_tiny_t5

    sys.path.insert(0, str(REPO / "tests"))
    from fixtures_nabirds import write_nabirds

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    write_nabirds(workdir / "nabirds")
    tiny_t5 = build_tiny_t5(workdir / "tiny_t5", [f"a photo of a {name.lower()}" for name in CLASSES], d_model=32)

    writes = []
    original_write = checkpoint_io.atomic_write

    def timed_write(target, write):
        peak_before = kib("VmHWM")
        start = time.perf_counter()
        original_write(target, write)
        writes.append(
            {
                "file": Path(target).name,
                "bytes": Path(target).stat().st_size,
                "seconds": time.perf_counter() - start,
                "peak_before_kib": peak_before,
                "peak_after_kib": kib("VmHWM"),
            }
        )

    checkpoint_io.atomic_write = timed_write
    weight_snapshots.atomic_write = timed_write
    start = time.perf_counter()
    main(
        [
            "fit",
            "--config",
            str(REPO / "configs/nabirds_imagen.yaml"),
            "--data.init_args.root",
            str(workdir / "nabirds"),
            "--data.init_args.cache_dir",
            str(workdir / "cache"),
            "--model.init_args.text_encoder",
            str(tiny_t5),
            "--model.init_args.text_cache_dir",
            str(workdir / "text_cache"),
            "--trainer.max_steps",
            "2",
            "--trainer.accelerator",
            "cpu",
            "--trainer.default_root_dir",
            str(workdir / "runs"),
            "--trainer.enable_progress_bar",
            "false",
            "--tracking.logger",
            "csv",
            "--snapshots.every_n_steps",
            "1",
            *overrides,
        ]
    )
    print("RESULT " + json.dumps({"writes": writes, "peak_kib": kib("VmHWM"), "seconds": time.perf_counter() - start}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], usage="%(prog)s [-- fit overrides]")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args, overrides = parser.parse_known_args()
    overrides = [item for item in overrides if item != "--"]
    if args.child:
        child(args.child, overrides)
        return
    with tempfile.TemporaryDirectory() as workdir:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), "WANDB_MODE": "offline"}
        result = subprocess.run(
            [sys.executable, __file__, "--child", workdir, "--", *overrides], env=env, cwd=REPO, capture_output=True, text=True
        )
        lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
        if result.returncode != 0 or not lines:
            print(result.stdout[-3000:], result.stderr[-5000:], sep="\n")
            raise SystemExit(f"the preset run failed (exit {result.returncode}; -9 or 137 = killed for memory)")
        measured = json.loads(lines[-1][len("RESULT ") :])
    gib = 2**30
    writes = measured["writes"]
    training_peak = writes[0]["peak_before_kib"] if writes else measured["peak_kib"]
    print(
        f"configs/nabirds_imagen.yaml, 2 steps on a NABirds-layout fixture, tiny local T5, CPU; overrides: "
        f"{' '.join(overrides) or 'none'}\n"
    )
    print(f"peak RSS before the first save (training): {training_peak * 1024 / gib:.2f} GiB")
    print(f"peak RSS of the whole run (saves included): {measured['peak_kib'] * 1024 / gib:.2f} GiB")
    print(f"wall time: {measured['seconds']:.0f} s\n")
    print("| file | size | save time | peak RSS after it |")
    print("| --- | ---: | ---: | ---: |")
    for write in writes:
        print(
            f"| {write['file']} | {write['bytes'] / gib:.3f} GiB | {write['seconds']:.1f} s | "
            f"{write['peak_after_kib'] * 1024 / gib:.2f} GiB |"
        )


if __name__ == "__main__":
    main()
