"""Encode-once latent cache: the autoencoder's posterior (mean, log-variance) of every training image, on disk.

Latent diffusion trains on q(z | x) of a frozen autoencoder; encoding every image every step would cost more
than the UNet's step. The posteriors are computed once, before the first step, and written as one float32
``.npy`` (rows × flips × {mean, logvar} × C × h × w) plus a JSON sidecar (the dataset rows it holds), in
``$LIGHTNING_GEN_CACHE/latents`` (default ``~/.cache/lightning_gen/latents``, beside the decode-once image
cache). Its name is a hash of the autoencoder's weights (and latent scale), of every training image's pixels
and rows, and of whether mirrored images are kept: another autoencoder, a changed image or another split
builds a new cache; old ones stay until the user deletes them. With ``flips = 2`` the posterior of each
image's mirror image is kept too, so horizontal-flip augmentation happens in the latents (by choosing the
mirrored posterior) instead of on pixels the step never encodes.

Models never import ``data/``: the images come from the trainer's training dataset (any map-style dataset whose
items or batches carry ``image`` and ``index``), read in order in the main process.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, SequentialSampler, default_collate

from lightning_gen.console.progress import Progress
from lightning_gen.errors import UserError
from lightning_gen.seeding import rand, randn

CACHE_FORMAT_VERSION = 1
ENCODE_BATCH = 64

Posterior = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def default_latent_cache_dir() -> Path:
    """``$LIGHTNING_GEN_CACHE/latents`` if that is set, else ``~/.cache/lightning_gen/latents`` (as the image cache)."""
    root = os.environ.get("LIGHTNING_GEN_CACHE") or Path.home() / ".cache" / "lightning_gen"
    return Path(root) / "latents"


def weights_hash(module: torch.nn.Module) -> str:
    """sha256 of a module's state_dict (names, dtypes, shapes, bytes, and extra states such as a latent scale)."""
    digest = hashlib.sha256()
    for name, value in module.state_dict().items():
        digest.update(name.encode())
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        else:
            digest.update(json.dumps(value, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def file_hash(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _collate(items: Any) -> dict[str, Any]:
    # A batched dataset (``__getitems__``) already returns the batch dict; plain datasets return a list of items.
    return items if isinstance(items, dict) else default_collate(items)


def dataset_batches(dataset: Dataset, batch_size: int = ENCODE_BATCH) -> Iterator[dict[str, Any]]:
    """The dataset's un-augmented batches in order (augmentation runs after the loader, on the device)."""
    loader = DataLoader(dataset, batch_size=batch_size, sampler=SequentialSampler(dataset), collate_fn=_collate, num_workers=0)
    yield from loader


def dataset_hash(dataset: Dataset) -> str:
    """sha256 of every training image's row and uint8 pixels: what the cache was encoded from."""
    digest = hashlib.sha256()
    for batch in dataset_batches(dataset):
        digest.update(batch["index"].cpu().numpy().astype(np.int64).tobytes())
        digest.update((batch["image"].float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy().tobytes())
    return digest.hexdigest()


class LatentPosteriors:
    """A loaded cache: ``moments[i]`` (flips × 2 × C × h × w; [:, 0] mean, [:, 1] log-variance) of dataset row ``rows[i]``."""

    def __init__(self, moments: torch.Tensor, rows: torch.Tensor, location: Path | None = None):
        self.moments = moments
        self.rows = rows
        self.location = location

    @property
    def flips(self) -> int:
        return self.moments.shape[1]

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """The moments of dataset rows ``indices`` (N × flips × 2 × C × h × w), refusing rows it does not hold."""
        indices = indices.detach().cpu().long()
        positions = torch.searchsorted(self.rows, indices).clamp(max=len(self.rows) - 1)
        missing = self.rows[positions] != indices
        if missing.any():
            raise RuntimeError(
                f"The latent cache {self.location} holds no posterior for training rows {indices[missing][:5].tolist()}; "
                "delete it to rebuild it."
            )
        return self.moments[positions]

    def draw(self, indices: torch.Tensor, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
        """z = mean + exp(logvar / 2)·ε of each row's cached posterior (its mirror's with p = 1/2 when flips are kept).

        Draws from ``generator`` in this order: the flips (uniform, one per image, only when kept), then ε."""
        moments = self.lookup(indices).to(device)
        n = len(moments)
        if self.flips == 2:
            mirrored = (rand((n,), generator, device) < 0.5).long()
            moments = moments[torch.arange(n, device=device), mirrored]
        else:
            moments = moments[:, 0]
        mean, log_var = moments[:, 0], moments[:, 1]
        noise = randn(mean.shape, generator, device).to(mean.dtype)
        return mean + (0.5 * log_var).exp() * noise


def cache_paths(folder: Path, key: str) -> tuple[Path, Path]:
    array_path = folder / f"{key[:24]}.npy"
    return array_path, array_path.with_suffix(".json")


def cache_key(autoencoder_hash: str, images_hash: str, flips: int) -> str:
    text = json.dumps({"version": CACHE_FORMAT_VERSION, "autoencoder": autoencoder_hash, "images": images_hash, "flips": flips})
    return hashlib.sha256(text.encode()).hexdigest()


def load_posteriors(array_path: Path, sidecar_path: Path) -> LatentPosteriors | None:
    """The cache at ``array_path``, or None when it is absent or unusable (then it is rebuilt)."""
    if not (array_path.exists() and sidecar_path.exists()):
        return None
    try:
        sidecar = json.loads(sidecar_path.read_text())
        moments = torch.from_numpy(np.load(array_path, mmap_mode="c"))
        rows = torch.tensor(sidecar["rows"], dtype=torch.long)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if len(rows) != len(moments):
        return None
    return LatentPosteriors(moments, rows, array_path)


@torch.no_grad()
def encode_posteriors(
    dataset: Dataset, posterior: Posterior, device: torch.device, flips: int, array_path: Path, sidecar_path: Path
) -> None:
    """Encodes every image of ``dataset`` (and its mirror when ``flips`` is 2) and writes the cache atomically."""
    try:
        array_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"Cannot write the latent cache to '{array_path.parent}' ({error.strerror or error}); "
            "set model.init_args.latent_cache_dir or LIGHTNING_GEN_CACHE to a writable folder."
        ) from error
    rows, chunks = [], []
    with Progress("Encoding the training images once", total=len(dataset), unit="img") as progress:
        for batch in dataset_batches(dataset):
            images = batch["image"].to(device)
            views = [images, images.flip(-1)][:flips]
            moments = [torch.stack(posterior(view), dim=1) for view in views]  # each N × 2 × C × h × w
            chunks.append(torch.stack(moments, dim=1).float().cpu())
            rows.append(batch["index"].cpu().long())
            progress.update(len(images))
    if not chunks:
        raise UserError("The training set is empty, so there is nothing to encode for latent diffusion; check data.root.")
    all_rows = torch.cat(rows)
    order = torch.argsort(all_rows)  # sorted rows: a lookup is one searchsorted
    moments = torch.cat(chunks)[order]
    temp = array_path.with_name(f".{array_path.stem}-{uuid.uuid4().hex[:8]}.npy")
    try:
        np.save(temp, moments.numpy())
        os.replace(temp, array_path)
    finally:
        temp.unlink(missing_ok=True)
    temp_sidecar = sidecar_path.with_name(f".{sidecar_path.name}-{uuid.uuid4().hex[:8]}")
    temp_sidecar.write_text(json.dumps({"version": CACHE_FORMAT_VERSION, "flips": flips, "rows": all_rows[order].tolist()}))
    os.replace(temp_sidecar, sidecar_path)  # written last: its presence marks the cache complete


def open_latent_cache(
    dataset: Dataset, posterior: Posterior, autoencoder_hash: str, device: torch.device, flips: int, folder: Path
) -> LatentPosteriors:
    """The cache for this autoencoder and these images, encoding them first when it does not exist yet."""
    key = cache_key(autoencoder_hash, dataset_hash(dataset), flips)
    array_path, sidecar_path = cache_paths(folder, key)
    cached = load_posteriors(array_path, sidecar_path)
    if cached is None:
        encode_posteriors(dataset, posterior, device, flips, array_path, sidecar_path)
        cached = load_posteriors(array_path, sidecar_path)
        if cached is None:
            raise RuntimeError(f"The latent cache just written to {array_path} could not be read back.")
    return cached
