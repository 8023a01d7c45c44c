"""Wall time (and, with a judge, class accuracy) of DDIM 50 steps versus DDPM 1000 steps on one class-conditional checkpoint.

    python benchmarks/sampling.py                                  # trains a small shapes DDPM briefly first
    python benchmarks/sampling.py --ckpt_path runs/shapes_ddpm/version_0/checkpoints/last.ckpt \
        --judge runs/shapes_judge/version_0/checkpoints/last.ckpt --num 64

Both samplers start from the same seed and ask for the same classes (evenly spread over the
vocabulary) with the model's guidance scale; the judge (lightning_gen.models.judge) is optional.
``--svc_config CONFIG`` adds a second judge of another kind: an RBF SVC on the real training pixels that
CONFIG's datamodule serves (benchmarks/two_judges.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from lightning_gen.checkpoints.loading import load_model  # noqa: E402
from lightning_gen.data import ShapesDataModule  # noqa: E402
from lightning_gen.models import DDPM  # noqa: E402

SAMPLERS = (("ddim", 50), ("ddpm", 1000))


def train_briefly(steps: int, image_size: int) -> DDPM:
    """A small class-conditional DDPM on shapes, trained for ``steps`` steps (enough for timing, not for quality)."""
    pl.seed_everything(0, verbose=False)
    data = ShapesDataModule(num_images=2048, image_size=image_size, batch_size=32)
    model = DDPM(data.facts, conditioning="class", unet={"block_out_channels": (32, 64), "layers_per_block": 1})
    trainer = pl.Trainer(
        max_steps=steps, accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(model, datamodule=data)
    return model.eval()


def judged_accuracy(judge: torch.nn.Module | None, images: torch.Tensor, labels: torch.Tensor, class_names: tuple[str, ...]) -> str:
    if judge is None:
        return "–"
    from lightning_gen.models.judge import judge_accuracy  # another engineer's module; optional here

    return f"{judge_accuracy(judge, images, labels, 'class', class_names)['overall']:.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", help="a class-conditional DDPM checkpoint; default: train one briefly")
    parser.add_argument("--judge", help="a Judge checkpoint trained on the same classes, for the accuracy column")
    parser.add_argument("--svc_config", help="a config whose data: serves the real images, for a second judge (an SVC)")
    parser.add_argument("--num", type=int, default=8, help="images per sampler")
    parser.add_argument("--train_steps", type=int, default=100)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (the machine is shared)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(args.ckpt_path, device) if args.ckpt_path else train_briefly(args.train_steps, args.image_size).to(device)
    class_names = model.data_facts.class_names
    labels = torch.linspace(0, len(class_names) - 1, args.num).round().long()
    cnn = load_model(args.judge, device).eval() if args.judge else None
    svc = None
    if args.svc_config:
        from two_judges import svc_judge  # scikit-learn only when asked for

        svc = svc_judge(args.svc_config, len(class_names))
    rows = []
    for sampler, steps in SAMPLERS:
        generator = torch.Generator(device=device).manual_seed(0)
        start = time.perf_counter()
        images = model.sample(args.num, condition=labels, generator=generator, steps=steps, sampler=sampler)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        judged = [judged_accuracy(judge, images, labels, class_names) for judge in (cnn, svc)]
        rows.append((sampler, steps, seconds, *judged))
    baseline = rows[1][2]
    print(f"{args.num} images, {model.data_facts.image_size}×{model.data_facts.image_size}, guidance {model.guidance_scale}, {device}")
    print("| sampler | steps | wall time (s) | speed-up vs DDPM 1000 | class accuracy: CNN judge | SVC on pixels |")
    print("| --- | --- | --- | --- | --- | --- |")
    for sampler, steps, seconds, by_cnn, by_svc in rows:
        print(f"| {sampler} | {steps} | {seconds:.2f} | {baseline / seconds:.1f}× | {by_cnn} | {by_svc} |")


if __name__ == "__main__":
    main()
