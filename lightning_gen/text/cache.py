"""CaptionEmbeddingCache: every unique caption goes through the text encoder once, ever.

Embeddings and masks live in one safetensors file per (encoder, max_length), read into memory at start, so later
runs reuse them. ``fill`` encodes every caption a dataset can serve before the first step (DDPM's ``on_fit_start``
calls it with ``served_captions(datamodule)``): the union of what any rank lacks, in chunks, each DDP rank encoding
its own share; the shares are gathered so every rank ends with all of them, and rank 0 writes the file once. The
encoder moves to the device once for the fill and is dropped after it, so training only reads. ``lookup`` still
encodes a caption nothing filled (a prompt at sampling time, a datamodule that cannot list its captions) and, on
rank 0, writes the file for it.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save

from lightning_gen.checkpoints.files import replace_file
from lightning_gen.console.progress import track
from lightning_gen.seeding import process_rank
from lightning_gen.text.t5 import FrozenT5, encoder_fingerprint

ENCODE_CHUNK = 64  # captions per encoder call: bounds activation memory on a first epoch full of misses


class TextEncoder(Protocol):
    def encode(self, captions: Sequence[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]: ...

    def to(self, device: torch.device | str) -> TextEncoder: ...


@runtime_checkable
class ServesCaptions(Protocol):
    """A datamodule that can list every caption its splits serve (lightning_gen.data.base.GenerativeDataModule)."""

    def captions(self) -> list[str]: ...


def served_captions(datamodule: Any) -> list[str]:
    """The captions ``datamodule`` can serve (after its setup); [] when it cannot list them."""
    return list(datamodule.captions()) if isinstance(datamodule, ServesCaptions) else []


GatherObjects = Callable[[Any], list[Any]]


def gather_objects(world_size: int) -> GatherObjects:
    """Every rank's object, in rank order (torch.distributed's all_gather_object; one process: just its own)."""

    def gather(obj: Any) -> list[Any]:
        if world_size == 1 or not dist.is_available() or not dist.is_initialized():
            return [obj]
        gathered: list[Any] = [None] * world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    return gather


def caption_key(caption: str) -> str:
    return hashlib.sha256(caption.encode("utf-8")).hexdigest()


class CaptionEmbeddingCache:
    """Maps captions to (embeddings N×L×D float32, mask N×L bool), encoding each unique caption once.

    Args:
        encoder_name: hub name or local directory of the T5 encoder; part of the cache file's name.
        max_length: tokens per caption (padded/truncated); part of the cache file's name.
        cache_dir: where the safetensors file lives (``~`` is expanded).
        load_encoder: builds the encoder on the first miss; defaults to ``FrozenT5(encoder_name)``.
    """

    def __init__(
        self,
        encoder_name: str,
        max_length: int,
        cache_dir: str | Path,
        load_encoder: Callable[[], TextEncoder] | None = None,
    ):
        self.encoder_name = encoder_name
        self.max_length = max_length
        self.cache_dir = Path(cache_dir).expanduser()
        self._load_encoder = load_encoder or functools.partial(FrozenT5, encoder_name)  # picklable, unlike a lambda
        self._encoder: TextEncoder | None = None
        readable = re.sub(r"[^A-Za-z0-9_.-]+", "--", encoder_name).strip("-.")[-60:]
        self.path = self.cache_dir / f"{readable}-len{max_length}-{encoder_fingerprint(encoder_name)}.safetensors"
        self._entries: dict[str, torch.Tensor] = load_file(self.path) if self.path.exists() else {}

    def __deepcopy__(self, memo: dict) -> CaptionEmbeddingCache:
        # A model copy (e.g. the EMA copy of weight averaging) shares the cache instead of duplicating the encoder.
        return self

    def __len__(self) -> int:
        return len(self._entries) // 2

    def __contains__(self, caption: str) -> bool:
        return f"{caption_key(caption)}.embedding" in self._entries

    def lookup(self, captions: Sequence[str], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings and masks of ``captions`` (in order) on ``device``; encodes and stores the unseen ones."""
        missing = list(dict.fromkeys(caption for caption in captions if caption not in self))
        if missing:
            self._encode(missing, torch.device(device))
        keys = [caption_key(caption) for caption in captions]
        # torch.stack makes fresh tensors, so entries first made under inference_mode are safe in training.
        embeddings = torch.stack([self._entries[f"{key}.embedding"] for key in keys])
        masks = torch.stack([self._entries[f"{key}.mask"] for key in keys])
        return embeddings.to(device), masks.to(device)

    def fill(
        self,
        captions: Sequence[str],
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
        gather: GatherObjects | None = None,
    ) -> int:
        """Encodes every caption of ``captions`` that any rank lacks, each rank its share; returns how many.

        Call it on every rank at once (it gathers). Rank ``r`` encodes chunk ``r`` of each round of ``world_size``
        chunks; after each round every rank stores every rank's chunk; rank 0 writes the file once at the end.
        """
        gather = gather or gather_objects(world_size)
        mine = [caption for caption in dict.fromkeys(captions) if caption not in self]
        missing = list(dict.fromkeys(caption for part in gather(mine) for caption in part))  # any rank's misses
        if not missing:
            return 0
        rounds = range(math.ceil(len(missing) / (ENCODE_CHUNK * world_size)))
        if len(rounds) > 1:
            rounds = track(rounds, f"encoding {len(missing)} captions with {self.encoder_name}", len(rounds), "rounds")
        encoder = self._loaded_encoder().to(device)
        try:
            for round_ in rounds:
                start = (round_ * world_size + rank) * ENCODE_CHUNK
                chunk = missing[start : start + ENCODE_CHUNK]
                encoded = self._encoded(encoder, chunk) if chunk else {}
                for part in gather(encoded):
                    self._entries.update(part)
        finally:
            encoder.to("cpu")
        self._encoder = None  # training only reads from here on: the encoder's memory is freed
        if rank == 0:
            self._save()
        return len(missing)

    def _loaded_encoder(self) -> TextEncoder:
        if self._encoder is None:
            self._encoder = self._load_encoder()
        return self._encoder

    def _encoded(self, encoder: TextEncoder, captions: list[str]) -> dict[str, torch.Tensor]:
        embeddings, masks = encoder.encode(captions, self.max_length)
        entries = {}
        for caption, embedding, mask in zip(captions, embeddings.float().cpu(), masks.bool().cpu()):
            key = caption_key(caption)
            entries[f"{key}.embedding"], entries[f"{key}.mask"] = embedding.clone(), mask.clone()
        return entries

    def _encode(self, captions: list[str], device: torch.device) -> None:
        """A lookup's misses (nothing filled them): encoded on this rank, written by rank 0."""
        encoder = self._loaded_encoder().to(device)
        try:
            starts = range(0, len(captions), ENCODE_CHUNK)
            if len(starts) > 1:  # a bulk fill shows progress; one batch's misses do not (the fit's lines do)
                starts = track(starts, f"encoding {len(captions)} captions with {self.encoder_name}", len(captions), "captions",
                               count=lambda start: min(ENCODE_CHUNK, len(captions) - start))  # fmt: skip
            for start in starts:
                self._entries.update(self._encoded(encoder, captions[start : start + ENCODE_CHUNK]))
        finally:
            encoder.to("cpu")
        if process_rank() == 0:  # under DDP rank 0 alone writes the file
            self._save()

    def _save(self) -> None:
        # Write-then-rename (a temporary name of this writer's own): never a torn file, never two writers' mix.
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        replace_file(self.path, save({key: value.contiguous() for key, value in self._entries.items()}))
