"""The small protocol every model implements; callbacks and commands are written once against it.

- ``sample(n, condition=None, generator=None) -> images`` in [0, 1], N×C×H×W (every model);
- ``encode(x, condition=None) -> z``, ``decode(z, condition=None) -> images`` and
  ``reconstruct(x, condition=None) -> images`` where the model has a latent space;
- ``invert(x, condition=None, steps=None) -> noise`` where a sampler is deterministic (DDPM: DDIM
  inversion): ``sample(len(x), condition, initial_noise=noise, steps=steps)`` regenerates ``x``;
- ``batch_condition(batch) -> condition | None``: the condition a batch carries for this model;
- ``condition_from_names(names) -> condition`` and ``condition_names(condition) -> list[str]``
  where the model is conditional (class names or attribute names from the checkpoint).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class Samples(Protocol):
    def sample(self, n: int, condition: Any = None, generator: torch.Generator | None = None) -> torch.Tensor: ...


@runtime_checkable
class HasLatents(Protocol):
    def encode(self, x: torch.Tensor, condition: Any = None) -> torch.Tensor: ...

    def decode(self, z: torch.Tensor, condition: Any = None) -> torch.Tensor: ...

    def reconstruct(self, x: torch.Tensor, condition: Any = None) -> torch.Tensor: ...


@runtime_checkable
class Invertible(Protocol):
    def invert(self, x: torch.Tensor, condition: Any = None, steps: int | None = None) -> torch.Tensor: ...


def has_latents(model: Any) -> bool:
    return isinstance(model, HasLatents)


def is_invertible(model: Any) -> bool:
    return isinstance(model, Invertible)


def batch_condition(model: Any, batch: dict[str, Any]) -> Any:
    getter = getattr(model, "batch_condition", None)
    return getter(batch) if getter is not None else None
