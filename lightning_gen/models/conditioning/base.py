"""The conditioner of an unconditional model, and what every conditioner answers.

A conditioner is the one place that knows a kind of condition (none / class / attributes / text): what a
batch carries, the model's inputs for it (a diffusion UNet's keyword arguments, a VAE decoder's vector),
the null condition and condition dropout of classifier-free guidance, the vocabulary, and the protocol's
``spread_conditions`` / ``condition_from_names`` / ``condition_from_prompt`` / ``condition_names``.
Models hold one (``conditioner_for``) and never branch on the kind themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts

UNetInputs = dict[str, torch.Tensor]  # a condition as diffusion UNet keyword arguments


def broadcast(condition: Any, n: int) -> Any:
    """One condition repeated n times, or n conditions as given (a tensor's first dim or a list)."""
    if len(condition) == n:
        return condition
    if len(condition) == 1:
        return condition.expand(n, *condition.shape[1:]) if isinstance(condition, torch.Tensor) else list(condition) * n
    raise UserError(f"Got {len(condition)} conditions for {n} samples; give one condition or one per sample.")


class Conditioner:
    """No condition: batches carry none, the UNet gets no extra inputs, names and prompts are refused."""

    kind = "none"
    batch_key: str | None = None

    def __init__(self, facts: DataFacts, owner: str = "this model"):
        self.facts = facts
        self.owner = owner  # the model's name, for error messages

    # -- data ------------------------------------------------------------------------------
    @property
    def vocabulary(self) -> tuple[str, ...]:
        return ()

    def batch_condition(self, batch: dict[str, Any]) -> Any:
        if self.batch_key is None:
            return None
        if self.batch_key not in batch:
            raise UserError(
                f"model.conditioning is '{self.kind}' but the batches have no '{self.batch_key}'; use a dataset that "
                f"provides it or set model.conditioning to none."
            )
        return batch[self.batch_key]

    # -- the protocol's condition vocabulary ---------------------------------------------------
    def spread(self, n: int, device: torch.device | str) -> Any:
        """n conditions cycling evenly over the vocabulary; None where there is no vocabulary."""
        return None

    def from_names(self, names: Sequence[str], n: int | None, device: torch.device | str) -> Any:
        raise UserError(f"{self.owner} here is unconditional (conditioning none); sample it without --condition.")

    def from_prompt(self, prompt: str, n: int | None, device: torch.device | str) -> Any:
        raise UserError(f"{self.owner} here is unconditional (conditioning none); sample it without --prompt.")

    def names(self, condition: Any) -> list[str]:
        return []

    def grid_conditions(self, batch: dict[str, Any], device: torch.device | str) -> Any:
        """The rows of a validation grid that do not depend on the batch order; None for none."""
        return None

    # -- a diffusion UNet's inputs -------------------------------------------------------------
    def unet_inputs(self, condition: Any, n: int, device: torch.device | str, null_text: torch.Tensor | None = None) -> UNetInputs:
        """The UNet keyword arguments for ``condition``; None gives the null condition."""
        return {}

    def null_inputs(self, n: int, device: torch.device | str, null_text: torch.Tensor | None = None) -> UNetInputs:
        """The learned null condition that classifier-free guidance contrasts against."""
        return {}

    def drop(self, inputs: UNetInputs, dropped: torch.Tensor, null_text: torch.Tensor | None = None) -> UNetInputs:
        """``inputs`` with the rows where ``dropped`` is True replaced by the null condition (CFG training)."""
        null = self.null_inputs(len(dropped), dropped.device, null_text)
        shaped = {key: dropped.view(-1, *[1] * (value.dim() - 1)) for key, value in inputs.items()}
        return {key: torch.where(shaped[key], null[key], value) for key, value in inputs.items()}

    # -- a VAE decoder's inputs ----------------------------------------------------------------
    def vector(self, condition: Any, batch_size: int, device: torch.device | str) -> torch.Tensor:
        raise NotImplementedError(f"conditioning '{self.kind}' has no condition vector")

    def classifier_loss(self, logits: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"conditioning '{self.kind}' has no classifier loss")
