"""Models: each in its own file behind GenerativeModel (see lightning_gen.protocol).

The classes load on first use (``lightning_gen.models.DDPM`` in a config, ``from lightning_gen.models import VAE``):
``--help`` and the commands that never build a model do not import diffusers through them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lightning_gen.models.autoencoder import Autoencoder
    from lightning_gen.models.base import GenerativeModel, ModelBase
    from lightning_gen.models.cvae import CVAE
    from lightning_gen.models.ddpm import DDPM
    from lightning_gen.models.judge import Judge
    from lightning_gen.models.latent_diffusion import LatentDiffusion
    from lightning_gen.models.vae import VAE, BetaVAE

# Exported name -> the module that defines it.
_MODULES = {
    "ModelBase": "lightning_gen.models.base",
    "GenerativeModel": "lightning_gen.models.base",
    "Autoencoder": "lightning_gen.models.autoencoder",
    "VAE": "lightning_gen.models.vae",
    "BetaVAE": "lightning_gen.models.vae",
    "CVAE": "lightning_gen.models.cvae",
    "DDPM": "lightning_gen.models.ddpm",
    "Judge": "lightning_gen.models.judge",
    "LatentDiffusion": "lightning_gen.models.latent_diffusion",
}

__all__ = ["ModelBase", "GenerativeModel", "Autoencoder", "VAE", "BetaVAE", "CVAE", "DDPM", "Judge", "LatentDiffusion"]


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
