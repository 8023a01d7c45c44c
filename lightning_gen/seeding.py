"""Random streams that are a function of (seed, purpose, rank, step): per-rank under DDP, identical on resume.

The global RNG is the same on every DDP rank (one ``seed_everything``) and only rank 0's state is
checkpointed, so randomness that must differ between ranks (diffusion noise and timesteps, VAE
sampling, augmentation) is drawn from a generator derived from these keys instead.
"""

from __future__ import annotations

import os

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
