"""A text encoder for tests that records its calls, and a caption cache built on it."""

from pathlib import Path

import torch

from lightning_gen.text import CaptionEmbeddingCache


class CountingEncoder:
    """Stands in for T5: embedding = caption length, and every call is recorded."""

    def __init__(self):
        self.calls: list[list[str]] = []
        self.devices: list[str] = []

    def encode(self, captions, max_length):
        self.calls.append(list(captions))
        lengths = torch.tensor([float(len(caption)) for caption in captions])
        embeddings = lengths.view(-1, 1, 1).expand(-1, max_length, 3).clone()
        mask = torch.zeros(len(captions), max_length, dtype=torch.bool)
        mask[:, :2] = True
        return embeddings, mask

    def to(self, device):
        self.devices.append(str(device))
        return self


def counting_cache(directory: Path, encoder: CountingEncoder, loads: list | None = None) -> CaptionEmbeddingCache:
    def load():
        if loads is not None:
            loads.append(1)
        return encoder

    return CaptionEmbeddingCache("fake/encoder", max_length=4, cache_dir=directory, load_encoder=load)
