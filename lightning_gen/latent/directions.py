"""Attribute directions in a VAE's latent space (seed 001): the mean posterior mean of images with an
attribute minus that of images without it, over up to N training images. Adding a multiple of a
direction to an image's latent adds (or, negative, removes) the attribute.

One global direction is the same for every image, but a VAE's latent space seldom holds an attribute
along one straight line: how "blue" is written in z depends on where the shape is and how big. So the
references' latents are kept too, and ``local`` gives each image its own direction: the mean of its k
nearest references with the attribute minus the mean of its k nearest references without it
(nearness measured with the global directions of the attributes involved projected out, so the
neighbours share everything *but* the attribute). k = 0 is seed 001's global direction.

One pass over the references yields every attribute's direction; they are cached per checkpoint in
its run directory, keyed by the checkpoint file (size, mtime), the number of references and the data.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lightning_gen.checkpoints.files import replace_file
from lightning_gen.errors import UserError
from lightning_gen.protocol import batch_condition, has_latents
from lightning_gen.runs.lookup import run_directory_of_checkpoint

CACHE_FOLDER = "directions"
CACHE_FORMAT = 2  # 2: the references' latents and attributes are stored for local directions
DEFAULT_REFERENCES = 8000  # training images (at most) whose latents the directions come from


@dataclass
class Directions:
    """Per attribute (names in ``names`` order): the direction and how many references had / lacked it."""

    names: tuple[str, ...]
    vectors: torch.Tensor  # A×latent
    with_counts: torch.Tensor  # A
    without_counts: torch.Tensor  # A
    latents: torch.Tensor | None = None  # N×latent: the references' posterior means (for local directions)
    present: torch.Tensor | None = None  # N×A bool: which reference has which attribute

    def vector(self, name: str) -> torch.Tensor:
        """The global direction of ``name``: mean latent with it minus mean latent without it."""
        check_attribute(name, self.names)
        index = self.names.index(name)
        if self.with_counts[index] == 0 or self.without_counts[index] == 0:
            have = "none" if self.with_counts[index] == 0 else "all"
            raise UserError(
                f"{have} of the {int(self.with_counts[index] + self.without_counts[index])} reference images have "
                f"'{name}', so it has no direction; raise --references or pick another attribute."
            )
        return self.vectors[index]

    @property
    def has_references(self) -> bool:
        return self.latents is not None and self.present is not None

    def local(self, latents: torch.Tensor, towards: str, away: str | None = None, neighbours: int = 16) -> torch.Tensor:
        """N×latent: for each latent, the mean of its ``neighbours`` nearest references with ``towards`` minus the
        mean of its nearest references with ``away`` (None: without ``towards``).

        Nearness is measured after projecting out the global directions of ``towards`` (and ``away``), so the
        neighbours on both sides resemble the image in everything except the attribute being edited.
        """
        if not self.has_references:
            raise UserError("these cached directions keep no reference latents; delete the run's directions/ folder to recompute them.")
        involved = [towards] + ([away] if away is not None else [])
        # vector() also checks each name and that some references have it and some lack it.
        spans = torch.stack([self.vector(name) for name in involved], 1).to(latents.device, torch.float64)
        basis, _ = torch.linalg.qr(spans)
        references = self.latents.to(latents.device, torch.float64)
        queries = latents.double()

        def projected(points: torch.Tensor) -> torch.Tensor:
            return points - (points @ basis) @ basis.T

        present = self.present.to(latents.device)
        towards_rows = present[:, self.names.index(towards)]
        away_rows = present[:, self.names.index(away)] if away is not None else ~towards_rows

        def nearest_mean(rows: torch.Tensor) -> torch.Tensor:
            group = references[rows]
            k = min(neighbours, len(group))
            nearest = torch.cdist(projected(queries), projected(group)).topk(k, dim=1, largest=False).indices
            return group[nearest].mean(1)

        return (nearest_mean(towards_rows) - nearest_mean(away_rows)).to(latents.dtype)

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "vectors": self.vectors,
            "with_counts": self.with_counts,
            "without_counts": self.without_counts,
            "latents": self.latents,
            "present": self.present,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Directions:
        return cls(
            tuple(data["names"]), data["vectors"], data["with_counts"], data["without_counts"], data.get("latents"), data.get("present")
        )


def check_attribute(name: str, names: Sequence[str]) -> None:
    if name not in names:
        raise UserError(f"'{name}' is not an attribute of this checkpoint's data; valid attributes are: {', '.join(names)}.")


def require_attributes(model: Any) -> tuple[str, ...]:
    names = tuple(model.data_facts.attribute_names)
    if not names:
        raise UserError(
            f"this checkpoint's data has no attributes (data facts: {len(model.data_facts.class_names)} classes, 0 attributes); "
            "edit needs a model trained on a dataset with attributes (shapes, CelebA, AwA2)."
        )
    if not has_latents(model):
        raise UserError(
            f"{type(model).__name__} has no encoder, so it has no latent directions; edit needs a VAE, β-VAE or CVAE checkpoint."
        )
    return names


@torch.no_grad()
def compute_directions(model: Any, batches: Iterable[dict[str, Any]], names: Sequence[str], references: int) -> Directions:
    """Encodes up to ``references`` images of ``batches`` (each with ``attributes``, N×A in {0, 1}) with their own condition."""
    sums_with = sums_without = None
    with_counts = torch.zeros(len(names))
    without_counts = torch.zeros(len(names))
    kept_latents, kept_present = [], []
    seen = 0
    for batch in batches:
        if seen >= references:
            break
        if "attributes" not in batch:
            raise UserError("the datamodule's batches carry no 'attributes'; use the datamodule the checkpoint was trained on (--config).")
        take = min(len(batch["image"]), references - seen)
        batch = {key: value[:take] for key, value in batch.items()}
        device_batch = {key: value.to(model.device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}
        latents = model.encode(device_batch["image"], batch_condition(model, device_batch)).double().cpu()
        present = (batch["attributes"] > 0.5).double()  # B×A
        if sums_with is None:
            sums_with = torch.zeros(len(names), latents.shape[1], dtype=torch.float64)
            sums_without = torch.zeros_like(sums_with)
        sums_with += present.T @ latents
        sums_without += (1 - present).T @ latents
        with_counts += present.sum(0).float()
        without_counts += (1 - present).sum(0).float()
        kept_latents.append(latents.float())
        kept_present.append(present > 0.5)
        seen += take
    if sums_with is None:
        raise UserError("the datamodule served no training images to compute directions from; check its data settings.")
    vectors = sums_with / with_counts.double().clamp_min(1)[:, None] - sums_without / without_counts.double().clamp_min(1)[:, None]
    return Directions(tuple(names), vectors.float(), with_counts, without_counts, torch.cat(kept_latents), torch.cat(kept_present))


def cache_path(ckpt_path: str | Path, references: int, data_config: Mapping[str, Any]) -> Path:
    path = Path(ckpt_path).resolve()
    stat = path.stat()
    key = json.dumps(
        {"format": CACHE_FORMAT, "size": stat.st_size, "mtime": stat.st_mtime_ns, "references": references, "data": data_config},
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return run_directory_of_checkpoint(path) / CACHE_FOLDER / f"{path.stem}-{references}-{digest}.pt"


def cached_directions(
    model: Any, ckpt_path: str | Path, references: int, data_config: Mapping[str, Any], batches: Any
) -> tuple[Directions, bool]:
    """The checkpoint's directions from the cache, else computed from ``batches()`` and cached; also whether it was a hit."""
    names = require_attributes(model)
    if references < 1:
        raise UserError(f"--references must be at least 1, got {references}.")
    path = cache_path(ckpt_path, references, data_config)
    if path.is_file():
        cached = Directions.from_dict(torch.load(path, map_location="cpu", weights_only=True))
        if cached.names == names and cached.has_references:
            return cached, True
    directions = compute_directions(model, batches(), names, references)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(directions.to_dict(), buffer)
        replace_file(path, buffer.getvalue())  # atomic, and two writers of one cache never share a temporary file
    except OSError as error:
        print(f"Note: could not cache the directions in {path.parent} ({error.strerror or error}); they will be recomputed next time.")
    return directions, False
