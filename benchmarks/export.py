"""Images/s of `export` (batched, Lightning's predict loop, PNGs and metadata written) versus one `sample` call per image.

    python benchmarks/export.py --ckpt_path runs/shapes_ddpm/version_0/checkpoints/last.ckpt --per_class 2 --steps 25

Same checkpoint, same images (classes spread over the vocabulary, the checkpoint's guidance, DDIM),
one run. The per-image baseline only samples — it writes nothing — so the comparison favours it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from lightning_gen.checkpoints.loading import load_model  # noqa: E402
from lightning_gen.commands.export import export  # noqa: E402


def per_image_sampling(ckpt_path: str, per_class: int, steps: int | None, device: str) -> tuple[int, float]:
    model = load_model(ckpt_path, device)
    classes = len(model.data_facts.class_names)
    options = {"steps": steps, "sampler": "ddim"} if hasattr(model, "sampling_steps") else {}
    start = time.perf_counter()
    for class_id in range(classes):
        for index in range(per_class):
            generator = torch.Generator(device=device).manual_seed(index)
            model.sample(1, condition=torch.tensor([class_id], device=device), generator=generator, **options)
    if device == "cuda":
        torch.cuda.synchronize()
    return classes * per_class, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", required=True, help="a class-conditional CVAE or DDPM checkpoint")
    parser.add_argument("--per_class", type=int, default=2, help="images per class")
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (diffusion; default: the model's)")
    parser.add_argument("--batch_size", type=int, default=64, help="export batch size")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (the machine is shared)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    count, baseline = per_image_sampling(args.ckpt_path, args.per_class, args.steps, device)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        export(args.ckpt_path, out, per_class=args.per_class, steps=args.steps, batch_size=args.batch_size, trainer={"accelerator": device})
        batched = time.perf_counter() - start
    print(f"{count} images, {args.ckpt_path}, steps {args.steps or 'model default'}, {device}, {args.threads} thread(s)")
    print("| method | wall time (s) | images/s | speed-up |")
    print("| --- | --- | --- | --- |")
    print(f"| `sample` once per image (nothing written) | {baseline:.1f} | {count / baseline:.2f} | 1.0× |")
    print(
        f"| `export`, batch {args.batch_size} (PNGs + metadata written, load and Trainer start included) | "
        f"{batched:.1f} | {count / batched:.2f} | {baseline / batched:.1f}× |"
    )


if __name__ == "__main__":
    main()
