"""``python -m lightning_gen sample --ckpt_path P --num N --out grid.png [--seed S] [--condition a,b | --prompt TEXT]``.

Writes an N-image grid from a checkpoint alone, with the EMA weights when the run used EMA.
Model-specific sampling options (``--steps``, ``--guidance_scale``, ``--sampler``; ``--prior`` for VAEs)
are passed to models whose ``sampling_options()`` declare them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, Optional

import torch
from jsonargparse import ArgumentParser, Namespace
from torchvision.utils import save_image

from lightning_gen.checkpoints.posthoc_ema import load_posthoc_model
from lightning_gen.errors import UserError
from lightning_gen.inference.conditions import resolve_condition
from lightning_gen.inference.devices import resolve_device
from lightning_gen.inference.loading import load_model
from lightning_gen.inference.sampling import options_of, sampling_kwargs

DESCRIPTION = "write a grid of samples from a checkpoint (by class, attributes or prompt)"


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--ckpt_path", type=str, required=True, help="a .ckpt file of a lightning_gen run")
    parser.add_argument("--num", type=int, default=16, help="number of images")
    parser.add_argument("--out", type=str, default="samples.png", help="PNG file to write")
    parser.add_argument("--seed", type=int, default=0, help="noise seed; the same seed gives the same grid")
    parser.add_argument("--nrow", type=Optional[int], default=None, help="images per row (default: square-ish)")
    parser.add_argument("--condition", type=Optional[str], default=None, help="comma-separated class or attribute names")
    parser.add_argument("--prompt", type=Optional[str], default=None, help="free text (text models; attribute models map it)")
    add_sampling_arguments(parser)
    parser.add_argument("--device", type=str, default="auto", help="auto, cpu or cuda")
    parser.add_argument(
        "--ema_sigma_rel", type=Optional[float], default=None, help="post-hoc EMA length to rebuild (a run fitted with --ema.post_hoc true)"
    )


def add_sampling_arguments(parser: ArgumentParser) -> None:
    """The model-specific sampling options (``protocol.SAMPLING_OPTION_NAMES``), shared by ``sample`` and ``evaluate``."""
    parser.add_argument("--steps", type=Optional[int], default=None, help="sampling steps (diffusion models)")
    parser.add_argument("--guidance_scale", type=Optional[float], default=None, help="classifier-free guidance scale")
    parser.add_argument(
        "--sampler", type=Optional[str], default=None, help="ddim or ddpm (diffusion models); euler or heun (flow matching)"
    )
    parser.add_argument(
        "--prior",
        type=Optional[Literal["fitted", "standard"]],
        default=None,
        help="VAEs: fitted (the ex-post mixture stored in the checkpoint, when it has one) or standard (z ~ N(0, I))",
    )


def run(args: Namespace) -> None:
    if args.num < 1:
        raise UserError(f"--num must be at least 1, got {args.num}.")
    device = resolve_device(args.device)
    if args.ema_sigma_rel is None:
        model = load_model(args.ckpt_path, device)
    else:  # the EMA of that length rebuilt from the run's post-hoc snapshots
        model = load_posthoc_model(args.ckpt_path, args.ema_sigma_rel, device)
    condition = resolve_condition(model, args.num, args.condition, args.prompt)
    kwargs = sampling_kwargs(model, options_of(args))
    generator = torch.Generator(device=device).manual_seed(args.seed)
    with torch.no_grad():
        images = model.sample(args.num, condition=condition, generator=generator, **kwargs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.float().cpu(), out, nrow=args.nrow or math.ceil(math.sqrt(args.num)), padding=1)
    print(f"Wrote {args.num} samples to {out}")
