"""Conditions made of the data's names: one class per image (``label``) or a set of attributes (``attributes``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.nn import functional as F

from lightning_gen.errors import UserError
from lightning_gen.models.condition_grid import shown_conditions
from lightning_gen.models.conditioning.base import Conditioner, UNetInputs, broadcast
from lightning_gen.models.prompt_attributes import attributes_in_prompt


class NamedConditioner(Conditioner):
    """What classes and attributes share: a vocabulary from the data facts, names checked against it."""

    names_field = "class_names"

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return tuple(getattr(self.facts, self.names_field))

    def known_indices(self, names: Sequence[str]) -> list[int]:
        vocabulary = [name.strip() for name in self.vocabulary]
        unknown = [name for name in names if name.strip() not in vocabulary]
        if unknown:
            raise UserError(f"Unknown {self.kind} name '{unknown[0]}' for this model; valid names are: {', '.join(self.vocabulary)}.")
        return [vocabulary.index(name.strip()) for name in names]

    def prompt_names(self, prompt: str) -> list[str]:
        names = attributes_in_prompt(prompt, self.vocabulary)
        rank_zero_info(f"Prompt understood as {self.kind}: {', '.join(names)}")
        return names

    def from_prompt(self, prompt: str, n: int | None, device: torch.device | str) -> torch.Tensor:
        return self.from_names(self.prompt_names(prompt), n, device)


class ClassConditioner(NamedConditioner):
    """Class ids (N,) from ``batch["label"]``; the UNet's class embedding has one extra row, the null class."""

    kind, batch_key = "class", "label"

    def spread(self, n: int, device: torch.device | str) -> torch.Tensor:
        return torch.arange(n, device=device) % len(self.vocabulary)

    def from_names(self, names: Sequence[str], n: int | None, device: torch.device | str) -> torch.Tensor:
        """One class name for all ``n`` samples, or one per sample (``n`` None: one sample per name)."""
        indices = self.known_indices(names)
        if n is not None and len(indices) not in (1, n):
            raise UserError(
                f"--condition takes exactly one class name, or one per sample, for this model; got {len(names)} for {n} samples; "
                f"use one of: {', '.join(self.vocabulary)}."
            )
        labels = torch.tensor(indices, dtype=torch.long, device=device)
        return labels if n is None else broadcast(labels, n).clone()

    def prompt_names(self, prompt: str) -> list[str]:
        # Class vocabularies may overlap ("red", "red circle"): the longest match is the one meant.
        names = attributes_in_prompt(prompt, self.vocabulary)
        names = [max(names, key=len)]
        rank_zero_info(f"Prompt understood as {self.kind}: {', '.join(names)}")
        return names

    def names(self, condition: Any) -> list[str]:
        if condition is None:
            return []
        return [self.vocabulary[i] for i in torch.as_tensor(condition).flatten().tolist()]

    def grid_conditions(self, batch: dict[str, Any], device: torch.device | str) -> torch.Tensor:
        return shown_conditions(len(self.vocabulary), device)

    def unet_inputs(self, condition: Any, n: int, device: torch.device | str, null_text: torch.Tensor | None = None) -> UNetInputs:
        if condition is None:
            return self.null_inputs(n, device)
        count = len(self.vocabulary)
        labels = broadcast(torch.as_tensor(condition, dtype=torch.long).flatten(), n).to(device)
        if labels.numel() and not (0 <= int(labels.min()) and int(labels.max()) < count):
            raise UserError(f"Class ids must be in [0, {count}), got {labels.tolist()}; use condition_from_names.")
        return {"class_labels": labels}

    def null_inputs(self, n: int, device: torch.device | str, null_text: torch.Tensor | None = None) -> UNetInputs:
        return {"class_labels": torch.full((n,), len(self.vocabulary), dtype=torch.long, device=device)}

    def vector(self, condition: Any, batch_size: int, device: torch.device | str) -> torch.Tensor:
        """Class indices (N,) as one-hot rows (one row is repeated for the batch)."""
        condition = torch.as_tensor(condition, device=device)
        vector = F.one_hot(condition.long().view(-1), len(self.vocabulary)).float()
        return vector.expand(batch_size, -1) if len(vector) == 1 and batch_size > 1 else vector

    def classifier_loss(self, logits: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, condition.long().view(-1))


class AttributeConditioner(NamedConditioner):
    """Multi-hot attribute vectors (N×A) from ``batch["attributes"]``."""

    kind, batch_key, names_field = "attributes", "attributes", "attribute_names"

    def one_hot(self, index: torch.Tensor) -> torch.Tensor:
        return F.one_hot(index, len(self.vocabulary)).float()

    def spread(self, n: int, device: torch.device | str) -> torch.Tensor:
        """Attribute i alone, cycling over the attributes."""
        return self.one_hot(torch.arange(n, device=device) % len(self.vocabulary))

    def from_names(self, names: Sequence[str], n: int | None, device: torch.device | str) -> torch.Tensor:
        """The named attributes together, for each of ``n`` samples (``n`` None: one)."""
        indices = self.known_indices(names)
        vector = torch.zeros(1 if n is None else n, len(self.vocabulary), device=device)
        vector[:, indices] = 1.0
        return vector

    def names(self, condition: Any) -> list[str]:
        """Per sample, its attributes joined by commas (as ``--condition`` takes them)."""
        if condition is None:
            return []
        rows = torch.as_tensor(condition).reshape(-1, len(self.vocabulary)) > 0.5
        return [",".join(name for name, on in zip(self.vocabulary, row.tolist()) if on) for row in rows]

    def grid_conditions(self, batch: dict[str, Any], device: torch.device | str) -> torch.Tensor:
        return self.one_hot(shown_conditions(len(self.vocabulary), device))

    def vector(self, condition: Any, batch_size: int, device: torch.device | str) -> torch.Tensor:
        """Attribute vectors (N×A) as floats (one row is repeated for the batch)."""
        vector = torch.as_tensor(condition, device=device).float().view(-1, len(self.vocabulary))
        return vector.expand(batch_size, -1) if len(vector) == 1 and batch_size > 1 else vector

    def classifier_loss(self, logits: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, condition.float())
