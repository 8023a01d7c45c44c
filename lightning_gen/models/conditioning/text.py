"""Free-text conditions: captions from ``batch["caption"]``, embedded by a frozen T5 through a disk cache."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lightning_gen.facts import DataFacts
from lightning_gen.models.conditioning.base import Conditioner, UNetInputs, broadcast
from lightning_gen.text import CaptionEmbeddingCache

MAX_PROMPT_ROWS = 8  # distinct captions shown in a validation grid


def as_captions(condition: Any) -> list[str]:
    return [condition] if isinstance(condition, str) else list(condition)


class TextConditioner(Conditioner):
    """A caption per image; the null condition is a learned embedding sequence (Imagen's null text)."""

    kind, batch_key = "text", "caption"

    def __init__(self, facts: DataFacts, owner: str, cache: CaptionEmbeddingCache):
        super().__init__(facts, owner)
        self.cache = cache

    def from_names(self, names: Sequence[str], n: int | None, device: torch.device | str) -> list[str]:
        """For a text model a name is a caption: one for all ``n`` samples, or one per sample."""
        captions = [str(name) for name in names]
        return captions if n is None else list(broadcast(captions, n))

    def from_prompt(self, prompt: str, n: int | None, device: torch.device | str) -> list[str]:
        return [prompt] * (1 if n is None else n)

    def names(self, condition: Any) -> list[str]:
        return [] if condition is None else as_captions(condition)

    def grid_conditions(self, batch: dict[str, Any], device: torch.device | str) -> list[str] | None:
        """The batch's first distinct captions (None when it has none)."""
        captions = batch.get("caption") or []
        return list(dict.fromkeys(captions))[:MAX_PROMPT_ROWS] or None

    def unet_inputs(self, condition: Any, n: int, device: torch.device | str, null_text: torch.Tensor | None = None) -> UNetInputs:
        if condition is None:
            return self.null_inputs(n, device, null_text)
        embeddings, mask = self.cache.lookup(broadcast(as_captions(condition), n), device)
        return {"encoder_hidden_states": embeddings.to(null_text.dtype), "encoder_attention_mask": mask}

    def null_inputs(self, n: int, device: torch.device | str, null_text: torch.Tensor | None = None) -> UNetInputs:
        return {
            "encoder_hidden_states": null_text.expand(n, *null_text.shape),
            "encoder_attention_mask": torch.ones(n, null_text.shape[0], dtype=torch.bool, device=device),
        }
