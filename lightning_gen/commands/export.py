"""``python -m lightning_gen export --ckpt_path CKPT --per_class N --out DIR [--guidance_scale G] [--steps S]
[--prompts FILE | --prompt_template T]``.

Writes a generated dataset in the ImageFolder layout ``DIR/<class name>/<index>.png`` (flat
``DIR/<index>.png`` with ``--num N`` for unconditional models) and ``DIR/metadata.jsonl`` in the Hugging
Face imagefolder convention, so ``datasets.load_dataset("imagefolder", data_dir=DIR)`` and torchvision's
``ImageFolder(DIR)`` both read it. Image i of a class is made from its own noise seed (from --seed,
the class and i), so a re-run into the same DIR writes only the missing files and they come out the same.
Uses the checkpoint's EMA weights where the run had EMA; ``--trainer.devices N`` splits the work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from jsonargparse import ArgumentParser, Namespace
from lightning.pytorch.utilities import rank_zero_info

from lightning_gen.errors import UserError
from lightning_gen.inference.loading import load_model
from lightning_gen.protocol import Generator
from lightning_gen.synthetic.metadata import METADATA_FILE, check_or_write_settings, checkpoint_global_step, file_sha256, write_metadata
from lightning_gen.synthetic.plan import build_plan
from lightning_gen.synthetic.predict import predict_images
from lightning_gen.synthetic.trainer_options import trainer_options

DESCRIPTION = "write a generated dataset (ImageFolder + metadata.jsonl) from a checkpoint"


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--ckpt_path", type=str, required=True, help="a .ckpt file of a lightning_gen run (CVAE or DDPM)")
    parser.add_argument("--out", type=str, required=True, help="folder to write (re-running fills in what is missing)")
    parser.add_argument("--per_class", type=Optional[int], default=None, help="images per class (conditional models)")
    parser.add_argument("--num", type=Optional[int], default=None, help="number of images (unconditional models, flat layout)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed; image i of a class depends only on (seed, class, i)")
    parser.add_argument("--batch_size", type=int, default=64, help="images generated at once per device")
    parser.add_argument(
        "--steps", type=Optional[int], default=None, help="sampling steps (diffusion and flow models; default: the model's)"
    )
    parser.add_argument(
        "--guidance_scale", type=Optional[float], default=None, help="classifier-free guidance scale (default: the model's)"
    )
    parser.add_argument("--prompts", type=Optional[str], default=None, help="YAML mapping class name → prompt or list of prompts")
    parser.add_argument("--prompt_template", type=Optional[str], default=None, help="prompt per class, e.g. 'a photo of a {name}'")


def export_settings(model: Generator, ckpt_path: str, seed: int, steps: int | None, guidance_scale: float | None) -> dict[str, Any]:
    """What the images depend on besides their plan; stored in every metadata row and checked on resume."""
    declared = model.sampling_options()
    cls = type(model)
    return {
        "seed": seed,
        "guidance_scale": (guidance_scale if guidance_scale is not None else declared.defaults["guidance_scale"])
        if declared.accepts("guidance_scale")
        else None,
        "steps": (steps or declared.steps) if declared.accepts("steps") else None,
        "sampler": declared.deterministic_sampler,  # per-seed images are drawn with it (synthetic.generate)
        "model_class": f"{cls.__module__}.{cls.__qualname__}",
        "condition": model.conditioning,
        "checkpoint_sha256": file_sha256(ckpt_path),
        "global_step": checkpoint_global_step(ckpt_path),
    }


def export(
    ckpt_path: str,
    out: str | Path,
    per_class: int | None = None,
    num: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    steps: int | None = None,
    guidance_scale: float | None = None,
    prompts: str | None = None,
    prompt_template: str | None = None,
    trainer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Returns counts: ``planned``, ``written`` (this run) and ``skipped`` (already there), and ``seconds``."""
    if batch_size < 1:
        raise UserError(f"--batch_size must be at least 1, got {batch_size}.")
    model = load_model(ckpt_path, "cpu")
    plan = build_plan(model, seed, per_class, num, prompts, prompt_template)
    options = {"steps": steps, "guidance_scale": guidance_scale}
    root = Path(out)
    settings = export_settings(model, ckpt_path, seed, steps, guidance_scale)
    check_or_write_settings(root, settings)
    pending = [item for item in plan if not (root / item.file_name).is_file()]
    rank_zero_info(f"export: {len(plan)} images planned, {len(plan) - len(pending)} already in {root}, {len(pending)} to generate")

    def write_rows() -> None:
        rows = write_metadata(root, plan, settings)
        rank_zero_info(f"export: {rows} images and {METADATA_FILE} in {root}")

    seconds = predict_images(model, root, pending, options, batch_size, write_rows, trainer)
    return {"planned": len(plan), "written": len(pending), "skipped": len(plan) - len(pending), "seconds": seconds}


def run(args: Namespace) -> None:
    export(
        args.ckpt_path,
        args.out,
        args.per_class,
        args.num,
        args.seed,
        args.batch_size,
        args.steps,
        args.guidance_scale,
        args.prompts,
        args.prompt_template,
        trainer_options(args),
    )
