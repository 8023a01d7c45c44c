"""``python -m lightning_gen mix --ckpt_path CKPT A.jpg B.jpg [--steps 8] [--mode slerp|lerp] [--condition C] --out strip.png
[--gif out.gif]``.

Blends two images of any size and format through the checkpoint's latent space (seed 003's Kitten
Mixer): both are preprocessed like the training images (crop and resize from the checkpoint's data
facts), encoded, interpolated and decoded. The strip shows A, A's reconstruction, the mixes, B's
reconstruction and B. VAEs interpolate posterior means; DDPMs interpolate DDIM-inverted noises (slerp).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from jsonargparse import ArgumentParser, Namespace
from torchvision.utils import save_image

from lightning_gen.data.preprocess import load_user_image
from lightning_gen.errors import UserError
from lightning_gen.inference.codec import make_codec
from lightning_gen.inference.devices import resolve_device
from lightning_gen.inference.loading import load_model
from lightning_gen.latent.interpolate import Mode
from lightning_gen.latent.mixing import encode_pair, mix_strip, strip_grid, write_gif

DESCRIPTION = "blend two images through a checkpoint's latent space into a strip (and a GIF)"


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("images", nargs="*", default=[], help="the two images A and B (any size, any format PIL reads)")
    parser.add_argument("--ckpt_path", type=str, required=True, help="a .ckpt file of a VAE, β-VAE, CVAE or DDPM run")
    parser.add_argument("--steps", type=int, default=8, help="decoded images from A's reconstruction to B's, both included")
    parser.add_argument("--mode", type=Mode, default="slerp", help="slerp (spherical) or lerp (linear) interpolation")
    parser.add_argument("--condition", type=Optional[str], default=None, help="class or attribute names (conditional models)")
    parser.add_argument(
        "--inversion_steps", type=Optional[int], default=None, help="steps of a DDPM's DDIM (flow matching: ODE) inversion and decoding"
    )
    parser.add_argument("--out", type=str, default="mix.png", help="PNG strip to write")
    parser.add_argument("--gif", type=Optional[str], default=None, help="also write an animated GIF of the mixes here")
    parser.add_argument("--device", type=str, default="auto", help="auto, cpu or cuda")


def mix_files(
    model: Any, image_a: Any, image_b: Any, steps: int, mode: Mode, condition: str | None, inversion_steps: int | None = None
) -> torch.Tensor:
    """The strip's images ((steps + 2)×C×S×S); ``image_a``/``image_b`` are paths, bytes or PIL images."""
    codec = make_codec(model, condition, inversion_steps)
    facts = model.data_facts
    pair = encode_pair(codec, load_user_image(image_a, facts, "the first image"), load_user_image(image_b, facts, "the second image"))
    return mix_strip(codec, pair, steps, mode)


def run(args: Namespace) -> None:
    if len(args.images) != 2:
        raise UserError(f"mix takes exactly two images, got {len(args.images)}; e.g. mix --ckpt_path CKPT a.jpg b.jpg --out strip.png.")
    model = load_model(args.ckpt_path, resolve_device(args.device))
    strip = mix_files(model, *args.images, args.steps, args.mode, args.condition, args.inversion_steps)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(strip_grid(strip), out)
    print(f"Wrote a {len(strip)}-image mix strip to {out}")
    if args.gif:
        write_gif(strip[1:-1], args.gif)
        print(f"Wrote the mix animation to {args.gif}")
