"""Random streams that are a function of (seed, purpose, rank, step): per-rank under DDP, identical on resume.

The global RNG is the same on every DDP rank (one ``seed_everything``) and only rank 0's state is
checkpointed, so randomness that must differ between ranks (diffusion noise and timesteps, VAE
sampling, augmentation) is drawn from a generator derived from these keys instead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist

# The purposes, so that two draws at the same step never share a stream.
AUGMENTATION, TRAINING_NOISE = 1, 2


def process_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def run_seed() -> int:
    """The run's ``seed_everything`` (Lightning exports it to every rank), 0 when none was set."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def derived_generator(device: torch.device | str, *keys: int) -> torch.Generator:
    # SeedSequence mixes the keys, so neighbouring steps or ranks get unrelated streams.
    words = [part for key in keys for part in (int(key) & 0xFFFFFFFF, (int(key) >> 32) & 0xFFFFFFFF)]
    seed = int(np.random.SeedSequence(words).generate_state(2, np.uint32).view(np.uint64)[0])
    return torch.Generator(device=device).manual_seed(seed % 2**63)


# Draws from ``generator`` on its own device (so a CPU generator gives the same numbers whatever the model's
# device), or from the global RNG when it is None, then moved to ``device``: the noise of seeded sampling.
def randn(shape: Sequence[int], generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
    """Standard normal noise of ``shape`` drawn from ``generator`` (see above), on ``device``."""
    return torch.randn(tuple(shape), generator=generator, device=_draw_device(generator, device)).to(device)


def rand(shape: Sequence[int], generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
    """Uniform [0, 1) numbers of ``shape`` drawn from ``generator``, on ``device``."""
    return torch.rand(tuple(shape), generator=generator, device=_draw_device(generator, device)).to(device)


def randint(high: int, shape: Sequence[int], generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
    """Integers in [0, high) of ``shape`` drawn from ``generator``, on ``device``."""
    return torch.randint(high, tuple(shape), generator=generator, device=_draw_device(generator, device)).to(device)


def randperm(n: int, generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
    """A random permutation of range(n) drawn from ``generator``, on ``device``."""
    return torch.randperm(n, generator=generator, device=_draw_device(generator, device)).to(device)


def _draw_device(generator: torch.Generator | None, device: torch.device | str) -> torch.device | str:
    return device if generator is None else generator.device
