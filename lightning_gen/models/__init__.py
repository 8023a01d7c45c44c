"""Models: each in its own file behind GenerativeModel (see lightning_gen.protocol)."""

from lightning_gen.models.autoencoder import Autoencoder
from lightning_gen.models.base import GenerativeModel
from lightning_gen.models.cvae import CVAE
from lightning_gen.models.ddpm import DDPM
from lightning_gen.models.judge import Judge
from lightning_gen.models.vae import VAE, BetaVAE

__all__ = ["GenerativeModel", "Autoencoder", "VAE", "BetaVAE", "CVAE", "DDPM", "Judge"]
