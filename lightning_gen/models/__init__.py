"""Models: each in its own file behind GenerativeModel (see lightning_gen.protocol)."""

from lightning_gen.models.base import GenerativeModel, ModelBase
from lightning_gen.models.cvae import CVAE
from lightning_gen.models.ddpm import DDPM
from lightning_gen.models.judge import Judge
from lightning_gen.models.vae import VAE, BetaVAE

__all__ = ["ModelBase", "GenerativeModel", "VAE", "BetaVAE", "CVAE", "DDPM", "Judge"]
