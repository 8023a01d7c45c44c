"""Autoencoder: diffusers' AutoencoderKL with a spatial latent, trained here (recon + small KL [+ perceptual]).

The first stage of latent diffusion (Rombach et al. 2022): images → a C_lat × H/f × W/f latent → images. The
latent scale (1 / std of the posterior means over training images, Stable Diffusion's ``scaling_factor``) is
measured with the weights being validated and stored in the checkpoint, so a diffusion model on the latents
can bring them to unit variance.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts
from lightning_gen.models.base import GenerativeModel
from lightning_gen.models.losses import gaussian_kl
from lightning_gen.models.perceptual import VGGPerceptual
from lightning_gen.protocol import SamplingOptions

ENCODE_BATCH = 256


class LatentScale(nn.Module):
    """The latent scale as a checkpoint entry (``state_dict["latent_scale._extra_state"]``, a plain float).

    Not a buffer: the EMA callback averages buffers, and a scale must not be averaged with the ones before it.
    """

    def __init__(self):
        super().__init__()
        self.value = 1.0
        self.step = -1  # the optimizer step whose weights it was measured with

    def get_extra_state(self) -> dict[str, float]:
        return {"value": float(self.value), "step": int(self.step)}

    def set_extra_state(self, state: dict[str, float]) -> None:
        self.value, self.step = float(state["value"]), int(state.get("step", -1))


def group_count(channels: Sequence[int], most: int = 32) -> int:
    """The largest GroupNorm group count ≤ ``most`` that divides every width (32 for SD's widths, 8 for [8, 16])."""
    common = math.gcd(*channels)
    return max(g for g in range(1, most + 1) if common % g == 0)


class Autoencoder(GenerativeModel):
    """KL-regularised convolutional autoencoder (``diffusers.AutoencoderKL``) with a spatial latent.

    Args:
        block_out_channels: widths of the resolution levels; ``downsampling_factor`` f sets the number of levels
            (log2 f + 1: 3 for f = 4, 4 for f = 8), and a shorter list repeats its last width.
        layers_per_block: ResNet blocks per encoder level (the decoder has one more, as in diffusers).
        latent_channels: C_lat; the latent of one image is C_lat × H/f × W/f.
        downsampling_factor: 4 or 8.
        norm_num_groups: GroupNorm groups; None takes the largest ≤ 32 dividing every width.
        mid_block_attention: self-attention in the encoder's and decoder's middle blocks (at H/f × W/f).
        reconstruction: ``mse`` or ``l1`` between image and reconstruction in [-1, 1], summed per image (as SD).
        kl_weight: weight of the KL to N(0, I), summed per image; SD uses 1e-6: the latent stays detailed.
        perceptual_weights: a local torchvision ``vgg16`` state_dict; None (default) trains without a perceptual term.
        perceptual_weight: weight of that LPIPS-style distance, per pixel as in SD (its value × C·H·W per image).
        scale_images: the latent scale is measured over the posterior means of the most recent this many
            distinct training images (all ranks together).
    """

    def __init__(
        self,
        data_facts: DataFacts | None = None,
        block_out_channels: Sequence[int] = (64, 128, 256),
        layers_per_block: int = 1,
        latent_channels: int = 4,
        downsampling_factor: Literal[4, 8] = 4,
        norm_num_groups: int | None = None,
        mid_block_attention: bool = True,
        reconstruction: Literal["mse", "l1"] = "mse",
        kl_weight: float = 1e-6,
        perceptual_weights: str | None = None,
        perceptual_weight: float = 1.0,
        scale_images: int = 1024,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["step", "epoch"] = "step",
    ):
        super().__init__(data_facts, optimizer, lr_scheduler, scheduler_interval)
        self.save_model_hyperparameters()
        if downsampling_factor not in (4, 8):
            raise UserError(f"model.init_args.downsampling_factor is {downsampling_factor}; use 4 or 8.")
        levels = int(math.log2(downsampling_factor)) + 1
        widths = list(block_out_channels)
        if not widths or len(widths) > levels or min(widths) < 1:
            raise UserError(
                f"model.init_args.block_out_channels {widths} must list 1 to {levels} positive widths for downsampling_factor "
                f"{downsampling_factor}; shorten it or raise the factor."
            )
        widths += [widths[-1]] * (levels - len(widths))
        image_size = self.data_facts.image_size
        if image_size % downsampling_factor:
            raise UserError(
                f"data.image_size {image_size} is not divisible by model.init_args.downsampling_factor {downsampling_factor}; "
                "pick a size that is."
            )
        groups = norm_num_groups or group_count(widths)
        if any(width % groups for width in widths):
            raise UserError(f"model.init_args.norm_num_groups {groups} does not divide every width in {widths}; pick a divisor of each.")
        channels = self.data_facts.channels
        self.vae = AutoencoderKL(
            in_channels=channels,
            out_channels=channels,
            down_block_types=("DownEncoderBlock2D",) * levels,
            up_block_types=("UpDecoderBlock2D",) * levels,
            block_out_channels=tuple(widths),
            layers_per_block=layers_per_block,
            latent_channels=latent_channels,
            norm_num_groups=groups,
            sample_size=image_size,
            mid_block_add_attention=mid_block_attention,
        )
        self.downsampling_factor = downsampling_factor
        self.latent_channels = latent_channels
        self.reconstruction = reconstruction
        self.kl_weight = kl_weight
        self.perceptual_weights = perceptual_weights
        self.perceptual_weight = perceptual_weight
        self.scale_images = scale_images
        self.latent_scale = LatentScale()
        # Built at fit start and kept off the module tree: the frozen VGG is neither trained nor saved, and loading
        # the checkpoint elsewhere does not need its file.
        self._perceptual: tuple[VGGPerceptual, ...] = ()
        self._recent: OrderedDict[int, torch.Tensor] = OrderedDict()  # dataset index → uint8 image, for the scale
        self.psnr = nn.ModuleDict({stage: PeakSignalNoiseRatio(data_range=1.0) for stage in ("val", "test")})
        self.ssim = nn.ModuleDict({stage: StructuralSimilarityIndexMeasure(data_range=1.0) for stage in ("val", "test")})

    # -- the protocol -------------------------------------------------------------------------
    @property
    def latent_shape(self) -> tuple[int, ...]:
        side = self.data_facts.image_size // self.downsampling_factor
        return (self.latent_channels, side, side)

    @property
    def scale(self) -> float:
        """1 / std of the training images' latents: ``encode(x) * scale`` has unit variance (SD's scaling_factor)."""
        return self.latent_scale.value

    def posterior(self, x: torch.Tensor, condition: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance (clamped to [-30, 20] by diffusers) of q(z | x), each N × C_lat × H/f × W/f."""
        distribution = self.vae.encode(x * 2.0 - 1.0).latent_dist
        return distribution.mean, distribution.logvar

    def encode(self, x: torch.Tensor, condition: Any = None) -> torch.Tensor:
        return self.posterior(x)[0]

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's output in the model's [-1, 1] space, unclamped (what the loss sees)."""
        return self.vae.decode(z).sample

    def decode(self, z: torch.Tensor, condition: Any = None) -> torch.Tensor:
        return ((self.decode_raw(z).float() + 1.0) / 2.0).clamp(0.0, 1.0)

    def reconstruct(self, x: torch.Tensor, condition: Any = None) -> torch.Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def sample(
        self,
        n: int,
        condition: Any = None,
        generator: torch.Generator | None = None,
        initial_noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decodes N(0, I) / scale latents (``initial_noise``, n × latent_shape, when given).

        An autoencoder alone is not a good generator: its aggregate posterior is far from a Gaussian, so these
        images show what the latent space holds, not samples of the data; latent diffusion adds the prior."""
        if initial_noise is None:
            device = self.device if generator is None else generator.device
            initial_noise = torch.randn(n, *self.latent_shape, generator=generator, device=device)
        return self.decode(initial_noise.to(self.device, self.dtype) / self.scale)

    def sampling_options(self) -> SamplingOptions:
        return SamplingOptions(noise_shape=self.latent_shape)

    # -- the latent scale ---------------------------------------------------------------------
    def observe(self, images: torch.Tensor, indices: torch.Tensor) -> None:
        """Keeps the most recent ``scale_images`` distinct training images (uint8, CPU) the scale is measured on."""
        stored = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
        for index, image in zip(indices.tolist(), stored):
            self._recent[index] = image
            self._recent.move_to_end(index)
        while len(self._recent) > self.scale_images:
            self._recent.popitem(last=False)

    def observed_images(self) -> torch.Tensor:
        """The kept images as floats in [0, 1] (what ``update_latent_scale`` encodes)."""
        return torch.stack(list(self._recent.values())).float() / 255

    @torch.no_grad()
    def update_latent_scale(self, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """scale = 1 / std over every element of the kept images' posterior means, the sums reduced over ranks;
        with the model's weights, or those of ``state_dict`` (the weights a checkpoint saves: EMA ones when EMA is on)."""
        if not self._recent:
            return
        vae = self.vae
        if state_dict is not None:
            vae = copy.deepcopy(self.vae)
            vae.load_state_dict({key[4:]: value for key, value in state_dict.items() if key.startswith("vae.")})
        images = self.observed_images()
        stats = torch.zeros(3, dtype=torch.float64, device=self.device)  # count, Σz, Σz²
        for start in range(0, len(images), ENCODE_BATCH):
            batch = images[start : start + ENCODE_BATCH].to(self.device, self.dtype)
            means = vae.encode(batch * 2.0 - 1.0).latent_dist.mean.double()
            stats += torch.stack([torch.tensor(means.numel(), dtype=torch.float64, device=self.device), means.sum(), means.pow(2).sum()])
        if torch.distributed.is_available() and torch.distributed.is_initialized():  # every rank holds other images
            torch.distributed.all_reduce(stats)
        count, total, squares = stats.tolist()
        variance = squares / count - (total / count) ** 2
        if not math.isfinite(variance) or variance <= 0:
            rank_zero_warn(f"step {self.global_step}: the latents' variance is {variance}, so the latent scale stays {self.scale}.")
            return
        self.latent_scale.value = 1.0 / math.sqrt(variance)
        self.latent_scale.step = self.global_step

    def on_validation_epoch_start(self) -> None:
        # The weights validated (the EMA ones when EMA is on: swapped in before this hook) are those saved.
        if not self.trainer.sanity_checking:
            self.update_latent_scale()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # Measured again with the weights being saved (the EMA ones when EMA is on, which can differ from those
        # validated), so the stored scale is exactly that of the stored weights. Every rank saves (Lightning dumps the
        # checkpoint on each), so every rank takes part in the reduction.
        self.update_latent_scale(checkpoint["state_dict"])
        # The EMA copy's state_dict (put there by the EMA callback) holds the scale from before training.
        checkpoint["state_dict"]["latent_scale._extra_state"] = self.latent_scale.get_extra_state()

    # -- training -----------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        if self.perceptual_weights is not None and not self._perceptual:
            self._perceptual = (VGGPerceptual(self.perceptual_weights),)

    def perceptual(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        network = self._perceptual[0].to(target.device)
        return network(((reconstruction + 1) / 2).clamp(0, 1), target)

    def losses(self, x: torch.Tensor, sample_latent: bool) -> dict[str, torch.Tensor]:
        """Per-image sums averaged over the batch: rec (+ perceptual·C·H·W) + kl_weight · KL."""
        mean, log_var = self.posterior(x)
        if sample_latent:
            noise = torch.randn(mean.shape, generator=self.training_generator(), device=mean.device, dtype=mean.dtype)
            z = mean + noise * (0.5 * log_var).exp()
        else:
            z = mean
        output = self.decode_raw(z).float()
        target = x.float() * 2.0 - 1.0
        per_pixel = F.mse_loss(output, target, reduction="none") if self.reconstruction == "mse" else (output - target).abs()
        rec = per_pixel.flatten(1).sum(1).mean()
        kl = gaussian_kl(mean, log_var).mean()
        loss = rec + self.kl_weight * kl
        out = {"rec": rec, "kl": kl, "output": output}
        if self._perceptual:
            perceptual = self.perceptual(output, x).mean()
            loss = loss + self.perceptual_weight * perceptual * x[0].numel()
            out["perceptual"] = perceptual
        return {"loss": loss, **out}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        self.observe(batch["image"], batch["index"])
        out = self.losses(batch["image"], sample_latent=True)
        metrics = {f"train/{key}": out[key] for key in ("loss", "rec", "kl", "perceptual") if key in out}
        self.log_training(metrics, batch_size=len(batch["image"]))
        return out["loss"]

    def _score(self, batch: dict[str, Any], stage: str) -> None:
        # z = posterior mean: evaluation draws no random numbers, so PSNR/SSIM are repeatable.
        out = self.losses(batch["image"], sample_latent=False)
        size = len(batch["image"])
        logged = {f"{stage}/{key}": out[key] for key in ("loss", "rec", "kl", "perceptual") if key in out}
        self.log_dict(logged, prog_bar=stage == "val", batch_size=size, sync_dist=True)
        self.log_reconstruction_quality(stage, ((out["output"] + 1) / 2).clamp(0, 1), batch["image"].float(), size)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._score(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._score(batch, "test")
