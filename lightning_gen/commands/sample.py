"""``python -m lightning_gen sample --ckpt_path P --num N --out grid.png [--seed S] [--condition a,b | --prompt TEXT]``.

Writes an N-image grid from a checkpoint alone, with the EMA weights when the run used EMA.
Model-specific sampling options (``--steps``, ``--guidance_scale``, ``--sampler``; ``--prior`` for VAEs)
are passed to models whose ``sample`` accepts them.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any, Literal, Optional

import torch
from jsonargparse import ArgumentParser, Namespace
from torchvision.utils import save_image

from lightning_gen.commands.common import load_model, resolve_device
from lightning_gen.errors import UserError

SAMPLING_OPTIONS = ("steps", "guidance_scale", "sampler", "prior")


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


def add_sampling_arguments(parser: ArgumentParser) -> None:
    """The model-specific sampling options (SAMPLING_OPTIONS), shared by ``sample`` and ``evaluate``."""
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


def resolve_condition(model: Any, num: int, condition: str | None, prompt: str | None) -> Any:
    if condition is not None and prompt is not None:
        raise UserError("pass either --condition or --prompt, not both.")
    if condition is None and prompt is None:
        return None
    flag, method = ("--condition", "condition_from_names") if condition is not None else ("--prompt", "condition_from_prompt")
    build = getattr(model, method, None)
    if build is None:
        raise UserError(f"{type(model).__name__} in this checkpoint does not take {flag}; drop it.")
    if condition is not None:
        return build([name.strip() for name in condition.split(",") if name.strip()], num)
    return build(prompt, num)


def sampling_kwargs(model: Any, options: dict[str, Any]) -> dict[str, Any]:
    accepted = inspect.signature(model.sample).parameters
    given = {key: value for key, value in options.items() if value is not None}
    unsupported = [f"--{key}" for key in given if key not in accepted]
    if unsupported:
        raise UserError(f"{type(model).__name__} sampling does not take {', '.join(unsupported)}; drop it.")
    return given


def run(args: Namespace) -> None:
    if args.num < 1:
        raise UserError(f"--num must be at least 1, got {args.num}.")
    device = resolve_device(args.device)
    model = load_model(args.ckpt_path, device)
    condition = resolve_condition(model, args.num, args.condition, args.prompt)
    kwargs = sampling_kwargs(model, {key: args[key] for key in SAMPLING_OPTIONS})
    generator = torch.Generator(device=device).manual_seed(args.seed)
    with torch.no_grad():
        images = model.sample(args.num, condition=condition, generator=generator, **kwargs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.float().cpu(), out, nrow=args.nrow or math.ceil(math.sqrt(args.num)), padding=1)
    print(f"Wrote {args.num} samples to {out}")
