"""VAE and β-VAE: conv encoder/decoder from a list of channels, loss = recon_weight·recon + β·KL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from jsonargparse.typing import PositiveInt
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from lightning_gen.console.option_errors import whole_number
from lightning_gen.facts import DataFacts
from lightning_gen.models.base import GenerativeModel
from lightning_gen.models.conv_stacks import Activation, ConvDecoder, ConvEncoder, Upsampling
from lightning_gen.models.latent_prior import Covariance, LatentPrior
from lightning_gen.models.losses import ReconstructionLoss, gaussian_kl, reconstruction_loss
from lightning_gen.protocol import SamplingOptions


class VAE(GenerativeModel):
    """Variational autoencoder (Kingma & Welling) with the β weight of Higgins et al.

    Args:
        channels: encoder conv widths, one stride-2 level each (decoder mirrors them).
        latent_dim: size of z.
        decoder_dense: widths of dense layers between z and the first decoder conv (seed 004: [256, 256]).
        batchnorm, dropout, activation: per conv block.
        upsampling: ``transpose`` (strided transposed conv) or ``upsample`` (nearest ×2 + conv, seed 004's 2nd model).
        reconstruction: ``mse`` or ``bce``, summed per image.
        recon_weight: multiplies the reconstruction term (seed 001: 500 with BCE; seed 004: 0.5 with MSE).
        kl_weight: β. 1 is the plain VAE; β < 1 trades prior matching for sharper reconstructions.
        kl_warmup_steps: β ramps linearly from 0 over this many optimizer steps (0 = constant β).
        prior: where ``sample`` draws z: ``standard`` = N(0, I); ``gmm`` = a Gaussian mixture fitted ex post on the
            posterior means of recent training images (Ghosh et al. 2020), refitted at every validation epoch with
            the weights being validated (EMA ones included) and stored in the checkpoint. Use it for small β.
            ``diffusion`` = the same, with a small MLP diffusion denoiser (DDIM, 50 steps) in place of the mixture:
            the two-stage VAE of Dai & Wipf 2019, for latents a mixture fits poorly.
        gmm_components, gmm_covariance: the mixture's size and covariance form (``full`` or ``diag``).
        prior_fit_images: how many of the most recent training images the fitted prior is fitted on.
        prior_fit_steps, prior_width: the diffusion prior's Adam steps for its first fit (each refit continues from
            the previous denoiser for a quarter of them) and its MLP width (default 4 × ``latent_dim``).
    """

    def __init__(
        self,
        data_facts: DataFacts | None = None,
        channels: Sequence[int] = (32, 64, 128, 256),
        latent_dim: PositiveInt = 128,
        decoder_dense: Sequence[int] = (),
        batchnorm: bool = False,
        dropout: float = 0.0,
        activation: Activation = "leaky_relu",
        upsampling: Upsampling = "transpose",
        reconstruction: ReconstructionLoss = "mse",
        recon_weight: float = 1.0,
        kl_weight: float = 1.0,
        kl_warmup_steps: int = 0,
        prior: Literal["standard", "gmm", "diffusion"] = "standard",
        gmm_components: int = 10,
        gmm_covariance: Covariance = "full",
        prior_fit_images: int = 4096,
        prior_fit_steps: PositiveInt = 2000,
        prior_width: PositiveInt | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["step", "epoch"] = "step",
    ):
        latent_dim = whole_number(latent_dim, "model.latent_dim")
        super().__init__(data_facts, optimizer, lr_scheduler, scheduler_interval)
        self.save_model_hyperparameters()
        channels_in, image_size = self.data_facts.channels, self.data_facts.image_size
        self.latent_dim = latent_dim
        self.reconstruction = reconstruction
        self.recon_weight = recon_weight
        self.kl_weight = kl_weight
        self.kl_warmup_steps = kl_warmup_steps
        self.encoder = ConvEncoder(channels_in, channels, image_size, batchnorm, dropout, activation)
        self.encoder_head = nn.Linear(self.encoder.out_features + self.encoder_condition_size, 2 * latent_dim)
        self.decoder = ConvDecoder(
            latent_dim + self.decoder_condition_size,
            channels_in,
            channels,
            image_size,
            decoder_dense,
            batchnorm,
            dropout,
            activation,
            upsampling,
        )
        # Only built for a fitted prior: its checkpoint entry then exists, and older checkpoints keep loading strictly.
        density = None
        if prior == "diffusion":  # imported here: diffusers' scheduler costs a second of start-up every other VAE would pay
            from lightning_gen.models.denoising_prior import DenoisingDensity

            density = DenoisingDensity(latent_dim, prior_fit_steps, prior_width or 4 * latent_dim)
        fitted = prior != "standard"
        self.latent_prior = LatentPrior(latent_dim, gmm_components, gmm_covariance, prior_fit_images, density) if fitted else None
        self.psnr = nn.ModuleDict({stage: PeakSignalNoiseRatio(data_range=1.0) for stage in ("val", "test")})
        self.ssim = nn.ModuleDict({stage: StructuralSimilarityIndexMeasure(data_range=1.0) for stage in ("val", "test")})

    # Conditional subclasses widen these inputs; the plain VAE has none.
    encoder_condition_size = 0
    decoder_condition_size = 0

    # -- the protocol -------------------------------------------------------------------------
    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.latent_dim,)

    def posterior(self, x: torch.Tensor, condition: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encoder(x)
        if self.encoder_condition_size:
            features = torch.cat([features, self.condition_vector(condition, len(x))], 1)
        mean, log_var = self.encoder_head(features).chunk(2, dim=1)
        return mean, log_var.clamp(-30.0, 20.0)

    def encode(self, x: torch.Tensor, condition: Any = None) -> torch.Tensor:
        return self.posterior(x, condition)[0]

    def decode_logits(self, z: torch.Tensor, condition: Any = None) -> torch.Tensor:
        if self.decoder_condition_size:
            z = torch.cat([z, self.condition_vector(condition, len(z)).to(z.dtype)], 1)
        return self.decoder(z)

    def decode(self, z: torch.Tensor, condition: Any = None) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(z, condition).float())

    def reconstruct(self, x: torch.Tensor, condition: Any = None) -> torch.Tensor:
        return self.decode(self.encode(x, condition), condition)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        condition: Any = None,
        generator: torch.Generator | None = None,
        prior: Literal["fitted", "standard"] = "fitted",
        initial_noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """z from the fitted prior (mixture or denoiser) when the model has one (``prior="standard"``: from N(0, I)
        regardless), decoded.
        ``initial_noise`` (n × latent_dim) is decoded as given: the latents themselves."""
        z = self.sample_latents(n, generator, prior) if initial_noise is None else initial_noise
        return self.decode(z.to(self.device), condition)

    def sampling_options(self) -> SamplingOptions:
        return SamplingOptions(noise_shape=self.latent_shape, defaults={"prior": "fitted"}, choices={"prior": ("fitted", "standard")})

    def sample_latents(
        self, n: int, generator: torch.Generator | None = None, prior: Literal["fitted", "standard"] = "fitted"
    ) -> torch.Tensor:
        """n latents from the fitted prior (mixture or denoiser) when the model has one and ``prior`` is "fitted",
        else from N(0, I)."""
        device = self.device if generator is None else generator.device
        if self.latent_prior is not None and prior == "fitted":
            return self.latent_prior.sample(n, generator, device)
        return torch.randn(n, self.latent_dim, generator=generator, device=device)

    @torch.no_grad()
    def fit_latent_prior(self) -> None:
        """Refits the prior's density on the posterior means of the kept training images (gathered from every rank)."""
        kept = self.latent_prior.kept() if self.latent_prior is not None else None
        if kept is None:
            return
        images, conditions = kept
        codes = []
        for start in range(0, len(images), 256):
            condition = None if conditions is None else conditions[start : start + 256].to(self.device)
            codes.append(self.encode(images[start : start + 256].to(self.device), condition).float())
        gathered = self.all_gather(torch.cat(codes)).reshape(-1, self.latent_dim)  # same codes, same seed: every rank fits the same prior
        if not bool(torch.isfinite(gathered).all()):  # diverged weights (the NaN guard is skipping their steps): no fit
            rank_zero_warn(
                f"step {self.global_step}: the latent codes hold NaN/Inf, so the latent prior is not refitted "
                "(the previous one, or N(0, I), stays)."
            )
            return
        self.latent_prior.fit(gathered)  # seed 0 on every rank and at every fit

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.latent_prior is not None:
            # Runs after the EMA callback put its averaged copy's state_dict in the checkpoint; that copy's
            # fitted prior is the one from before training, so the current one is written over it.
            checkpoint["state_dict"]["latent_prior._extra_state"] = self.latent_prior.get_extra_state()

    def on_validation_epoch_start(self) -> None:
        # The weights validated (the EMA ones when EMA is on: swapped in before this hook) are those sampled.
        if self.latent_prior is not None and not self.trainer.sanity_checking:
            self.fit_latent_prior()

    def condition_vector(self, condition: Any, batch_size: int) -> torch.Tensor:
        raise NotImplementedError("unconditional model")

    # -- training -----------------------------------------------------------------------------
    def current_kl_weight(self) -> float:
        if self.kl_warmup_steps <= 0:
            return self.kl_weight
        return self.kl_weight * min(1.0, self.global_step / self.kl_warmup_steps)

    def losses(self, batch: dict[str, Any], sample_latent: bool) -> dict[str, torch.Tensor]:
        x = batch["image"]
        condition = self.batch_condition(batch)
        mean, log_var = self.posterior(x, condition)
        if sample_latent:
            noise = torch.randn(mean.shape, generator=self.training_generator(), device=mean.device, dtype=mean.dtype)
            z = mean + noise * (0.5 * log_var).exp()
        else:
            z = mean
        logits = self.decode_logits(z, condition)
        recon = reconstruction_loss(logits, x, self.reconstruction).mean()
        kl = gaussian_kl(mean, log_var).mean()
        loss = self.recon_weight * recon + self.current_kl_weight() * kl
        return {"loss": loss, "recon": recon, "kl": kl, "logits": logits}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if self.latent_prior is not None:
            self.latent_prior.observe(batch["image"], self.batch_condition(batch))
        out = self.losses(batch, sample_latent=True)
        metrics = {f"train/{k}": out[k] for k in ("loss", "recon", "kl")}
        self.log_training({**metrics, "train/kl_weight": self.current_kl_weight()}, batch_size=len(batch["image"]))
        return out["loss"]

    def _score(self, batch: dict[str, Any], stage: str) -> None:
        # z = posterior mean: evaluation draws no random numbers, so it cannot shift the RNG stream of
        # training (a resumed run stays identical to an uninterrupted one) and PSNR/SSIM are repeatable.
        out = self.losses(batch, sample_latent=False)
        size = len(batch["image"])
        # sync_dist: under DDP each rank sees a shard; the logged value is the mean over the whole set.
        self.log_dict({f"{stage}/{k}": out[k] for k in ("loss", "recon", "kl")}, prog_bar=stage == "val", batch_size=size, sync_dist=True)
        self.log_reconstruction_quality(stage, torch.sigmoid(out["logits"].float()), batch["image"].float(), size)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._score(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._score(batch, "test")


class BetaVAE(VAE):
    """β-VAE, the name the seeds use: the VAE above with β = ``kl_weight`` ≠ 1 (default 4, as in Higgins et al.)."""

    def __init__(self, *args: Any, kl_weight: float = 4.0, **kwargs: Any):
        super().__init__(*args, kl_weight=kl_weight, **kwargs)
