"""``python -m lightning_gen edit --ckpt_path CKPT --image X.jpg --attribute Blond_Hair [--strengths -2,-1,0,1,2]
[--references 2000] --out strip.png``
(or ``--from Black_Hair --to Blond_Hair``).

Moves the image's latent along an attribute direction (seed 001) built from the posterior means of up
to ``--references`` training images, computed once per checkpoint and cached in its run directory:
by default each image's own local direction (its ``--neighbours`` nearest references with the
attribute minus its nearest references without it); ``--neighbours 0`` gives the global one (mean with
minus mean without), the same for every image. The training data is rebuilt from the run's saved
config.yaml (or ``--config``). A CVAE encodes with ``--image_condition`` and decodes with
``--condition``, which swaps the condition.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from jsonargparse import ArgumentParser, Namespace
from torchvision.utils import save_image

from lightning_gen.data.preprocess import load_user_image
from lightning_gen.errors import UserError
from lightning_gen.inference.conditions import condition_by_names
from lightning_gen.inference.devices import resolve_device
from lightning_gen.inference.directions import load_directions
from lightning_gen.inference.loading import load_model
from lightning_gen.latent.directions import DEFAULT_REFERENCES, require_attributes
from lightning_gen.latent.editing import DEFAULT_NEIGHBOURS, condition_pair, edit_offset, edit_strip, parse_strengths
from lightning_gen.latent.mixing import strip_grid
from lightning_gen.latent.reference_data import data_section_of_run

DESCRIPTION = "add or remove an attribute (CelebA's Blond_Hair, a shape's colour) in an image through latent directions"


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--ckpt_path", type=str, required=True, help="a .ckpt file of a VAE, β-VAE or CVAE trained on data with attributes")
    parser.add_argument("--image", type=Optional[str], default=None, help="the image to edit (any size, any format PIL reads)")
    parser.add_argument("--attribute", type=Optional[str], default=None, help="the attribute to add (positive strengths) or remove")
    parser.add_argument("--from", type=Optional[str], default=None, help="with --to: move from this attribute to that one")
    parser.add_argument("--to", type=Optional[str], default=None, help="with --from: the attribute to move to")
    parser.add_argument(
        "--strengths",
        type=str,
        default="-2,-1,0,1,2",
        help="comma-separated multiples of the direction, one image each (--strengths -2,-1,0,1,2 and --strengths=-2,-1,0,1,2 both work)",
    )
    add_direction_arguments(parser)
    parser.add_argument("--condition", type=Optional[str], default=None, help="CVAE: the condition to decode with (swaps the image's)")
    parser.add_argument("--image_condition", type=Optional[str], default=None, help="CVAE: the image's own condition, to encode with")
    parser.add_argument("--out", type=str, default="edit.png", help="PNG strip to write: the input, then one image per strength")
    parser.add_argument("--device", type=str, default="auto", help="auto, cpu or cuda")


def add_direction_arguments(parser: ArgumentParser) -> None:
    """``--references`` and ``--neighbours``: how attribute directions are built (``edit`` and the app's Edit tab)."""
    parser.add_argument(
        "--references", type=int, default=DEFAULT_REFERENCES, help="training images (at most) whose latents the directions come from"
    )
    parser.add_argument(
        "--neighbours",
        type=int,
        default=DEFAULT_NEIGHBOURS,
        help="k: each image's direction is its k nearest references with the attribute minus its k nearest "
        "without; 0 = one global direction (seed 001)",
    )


def data_section(args: Namespace) -> dict[str, Any]:
    """``--config``/``--data.*`` when given, else the data section of the checkpoint's run config.yaml."""
    data = args.get("data")
    if isinstance(data, Namespace) and data.get("class_path"):
        return data.as_dict()
    if isinstance(data, dict) and data.get("class_path"):
        return dict(data)
    return data_section_of_run(args.ckpt_path)


def run(args: Namespace) -> None:
    if not args.image:
        raise UserError("pass the image to edit with --image X.jpg.")
    strengths = parse_strengths(args.strengths)
    model = load_model(args.ckpt_path, resolve_device(args.device))
    require_attributes(model)
    image = load_user_image(args.image, model.data_facts)
    codec = condition_pair(
        model, condition_by_names(model, args.image_condition, "--image_condition"), condition_by_names(model, args.condition)
    )
    directions, hit = load_directions(model, args.ckpt_path, args.references, data_section(args))
    edit = edit_offset(directions, args.attribute, args["from"], args.to, args.neighbours)
    strip = edit_strip(codec, image, edit, strengths)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(strip_grid(strip), out)
    source = (
        "cached" if hit else f"computed from {int(directions.with_counts[0] + directions.without_counts[0])} training images and cached"
    )
    print(f"Wrote the input and {len(strengths)} edits to {out} (directions {source})")
