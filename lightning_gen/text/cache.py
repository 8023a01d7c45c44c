"""CaptionEmbeddingCache: every unique caption goes through the text encoder once, ever.

Embeddings and masks live in one safetensors file per (encoder, max_length), read into memory
at start and rewritten atomically whenever new captions were encoded, so later epochs and later
runs reuse them (under DDP, rank 0 writes the file; the other ranks keep theirs in memory). The encoder
is loaded only on a miss and is moved back to the CPU after each encoding, so it never holds accelerator memory during training.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import torch
from safetensors.torch import load_file, save_file

from lightning_gen.console.progress import track
from lightning_gen.seeding import process_rank
from lightning_gen.text.t5 import FrozenT5, encoder_fingerprint

ENCODE_CHUNK = 64  # captions per encoder call: bounds activation memory on a first epoch full of misses


class TextEncoder(Protocol):
    def encode(self, captions: Sequence[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]: ...

    def to(self, device: torch.device | str) -> TextEncoder: ...


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

    def _encode(self, captions: list[str], device: torch.device) -> None:
        if self._encoder is None:
            self._encoder = self._load_encoder()
        encoder = self._encoder.to(device)
        try:
            starts = range(0, len(captions), ENCODE_CHUNK)
            if len(starts) > 1:  # a bulk fill shows progress; one training batch's misses do not (the fit's lines do)
                starts = track(starts, f"encoding {len(captions)} captions with {self.encoder_name}", len(captions), "captions",
                               count=lambda start: min(ENCODE_CHUNK, len(captions) - start))  # fmt: skip
            for start in starts:
                chunk = captions[start : start + ENCODE_CHUNK]
                embeddings, masks = encoder.encode(chunk, self.max_length)
                for caption, embedding, mask in zip(chunk, embeddings.float().cpu(), masks.bool().cpu()):
                    key = caption_key(caption)
                    self._entries[f"{key}.embedding"] = embedding.clone()
                    self._entries[f"{key}.mask"] = mask.clone()
        finally:
            encoder.to("cpu")
        if process_rank() == 0:  # under DDP every rank encodes its own misses; rank 0 alone writes the file
            self._save()

    def _save(self) -> None:
        # Write-then-rename: a crash or a second process writing at the same time never leaves a torn file.
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        save_file({key: value.contiguous() for key, value in self._entries.items()}, temporary)
        os.replace(temporary, self.path)
