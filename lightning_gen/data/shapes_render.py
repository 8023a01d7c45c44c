"""Procedural shapes: one coloured shape on a plain background, rendered deterministically from a seed.

Rendering is vectorised in torch and anti-aliased by 4× supersampling, so 10k images take
about a second and need no download.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {
    "red": (0.9, 0.1, 0.1),
    "green": (0.1, 0.8, 0.2),
    "blue": (0.15, 0.3, 0.95),
    "yellow": (0.95, 0.9, 0.1),
    "magenta": (0.9, 0.15, 0.85),
    "cyan": (0.1, 0.85, 0.9),
}
SIZES = {"small": 0.2, "large": 0.34}  # half-extent as a fraction of the image side
BACKGROUND = (0.12, 0.12, 0.12)
SUPERSAMPLE = 4


@dataclass
class RenderedShapes:
    images: torch.Tensor  # N×3×H×W uint8
    shape: torch.Tensor  # N int64 index into SHAPES
    colour: torch.Tensor  # N int64 index into COLOURS
    size: torch.Tensor  # N int64 index into SIZES


def _circle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return u**2 + v**2 <= 1.0


def _square(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.maximum(u.abs(), v.abs()) <= 0.82


def _triangle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (v <= 0.75) & (u.abs() <= (v + 1.0) / 1.75)


def _cross(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return ((u.abs() <= 0.32) & (v.abs() <= 1.0)) | ((v.abs() <= 0.32) & (u.abs() <= 1.0))


COVERAGE = (_circle, _square, _triangle, _cross)  # in the order of SHAPES


def _mask(kind: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Coverage of each shape in coordinates normalised by its half-extent (u right, v down).

    Each image's own shape only: the four masks of every image (then a gather) cost 4× the work at start-up.
    """
    mask = torch.empty(u.shape, dtype=torch.bool)
    for index, coverage in enumerate(COVERAGE):
        rows = (kind == index).nonzero().squeeze(1)
        if len(rows):
            mask[rows] = coverage(u[rows], v[rows])
    return mask


@dataclass
class ShapeParameters:
    """What each image shows, drawn up front: the pixels of any row follow from these alone."""

    shape: torch.Tensor  # N int64 index into SHAPES
    colour: torch.Tensor  # N int64 index into COLOURS
    size: torch.Tensor  # N int64 index into SIZES
    centre: torch.Tensor  # N×2 float, (x, y) as a fraction of the image side


def draw_shapes(num_images: int, seed: int) -> ShapeParameters:
    generator = torch.Generator().manual_seed(seed)
    shape = torch.randint(len(SHAPES), (num_images,), generator=generator)
    colour = torch.randint(len(COLOURS), (num_images,), generator=generator)
    size = torch.randint(len(SIZES), (num_images,), generator=generator)
    extent = torch.tensor(list(SIZES.values()))[size]
    # Centres keep the whole shape inside the frame.
    centre = extent[:, None] + torch.rand(num_images, 2, generator=generator) * (1 - 2 * extent[:, None])
    return ShapeParameters(shape=shape, colour=colour, size=size, centre=centre)


def render_rows(params: ShapeParameters, rows: torch.Tensor, image_size: int) -> torch.Tensor:
    """The images of ``rows`` (len(rows)×3×H×W uint8); each image depends on its own parameters only."""
    extent = torch.tensor(list(SIZES.values()))[params.size[rows]].view(-1, 1, 1)
    centre = params.centre[rows]
    fine = image_size * SUPERSAMPLE
    axis = (torch.arange(fine, dtype=torch.float32) + 0.5) / fine
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    u = (xs[None] - centre[:, 0].view(-1, 1, 1)) / extent
    v = (ys[None] - centre[:, 1].view(-1, 1, 1)) / extent
    coverage = F.avg_pool2d(_mask(params.shape[rows], u, v).float()[:, None], SUPERSAMPLE)
    palette = torch.tensor(list(COLOURS.values()))
    background = torch.tensor(BACKGROUND).view(1, 3, 1, 1)
    rgb = coverage * palette[params.colour[rows]].view(-1, 3, 1, 1) + (1 - coverage) * background
    return (rgb * 255).round().clamp(0, 255).to(torch.uint8)


def render_shapes(num_images: int, image_size: int, seed: int, chunk: int = 256) -> RenderedShapes:
    params = draw_shapes(num_images, seed)
    images = torch.empty(num_images, 3, image_size, image_size, dtype=torch.uint8)
    for start in range(0, num_images, chunk):
        rows = torch.arange(start, min(start + chunk, num_images))
        images[rows] = render_rows(params, rows, image_size)
    return RenderedShapes(images=images, shape=params.shape, colour=params.colour, size=params.size)
