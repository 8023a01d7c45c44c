"""LatentDiffusion: the DDPM's UNet on the scaled latents of a frozen autoencoder (Rombach et al. 2022).

Everything of the pixel DDPM (conditioning with classifier-free guidance, DDIM/DDPM samplers, v-prediction,
Min-SNR, EMA, DDIM inversion) is inherited: only the space diffused changes, from pixels in [-1, 1] to
``scale · posterior mean`` of the autoencoder (``DDPM.to_diffusion_space`` / ``from_diffusion_space``).

The autoencoder's weights are stored once, inside this model's checkpoint (as ``autoencoder.*`` entries of its
state_dict), and its architecture in the hyperparameter ``autoencoder_spec``: a checkpoint samples, evaluates and
exports from itself alone, however the autoencoder's file changes or moves afterwards. The file's sha256 is
recorded in the spec for provenance. The weights are frozen (never trained).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import AutoencoderKL
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from lightning_gen.config.trust import plain_data
from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts
from lightning_gen.models.autoencoder import Autoencoder
from lightning_gen.models.ddpm import DDPM
from lightning_gen.models.latent_cache import LatentPosteriors, default_latent_cache_dir, file_hash, open_latent_cache, weights_hash
from lightning_gen.models.unets import Conditioning
from lightning_gen.text import DEFAULT_TEXT_ENCODER


class DiffusersAutoencoder(nn.Module):
    """A diffusers ``AutoencoderKL`` folder (e.g. Stable Diffusion's ``vae/``) behind the Autoencoder's interface."""

    def __init__(self, config: dict[str, Any], scale: float, image_size: int):
        super().__init__()
        self.vae = AutoencoderKL.from_config(config)
        self.scale = float(scale)
        self.downsampling_factor = factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.latent_shape = (self.vae.config.latent_channels, image_size // factor, image_size // factor)
        self.image_channels = self.vae.config.in_channels
        if self.vae.config.out_channels != self.image_channels:
            raise UserError(
                f"the AutoencoderKL encodes {self.image_channels}-channel images but decodes {self.vae.config.out_channels}-channel "
                "ones; pass an autoencoder whose in_channels and out_channels match the data's channels."
            )

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        distribution = self.vae.encode(x * 2.0 - 1.0).latent_dist
        return distribution.mean, distribution.logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return ((self.vae.decode(z).sample.float() + 1.0) / 2.0).clamp(0.0, 1.0)


def load_diffusers_autoencoder(path: Path) -> AutoencoderKL:
    """The AutoencoderKL saved in ``path``, refusing another diffusers model (from_pretrained would load a UNet's folder
    as a randomly initialised AutoencoderKL, with only a warning) and a folder it cannot read."""
    how = "pass a diffusers AutoencoderKL folder (e.g. a Stable Diffusion model's vae/) or an Autoencoder checkpoint"
    try:
        class_name = json.loads((path / "config.json").read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError) as error:
        raise UserError(f"model.init_args.autoencoder {path}/config.json is not a readable diffusers config ({error}); {how}.") from error
    if class_name != "AutoencoderKL":
        raise UserError(
            f"model.init_args.autoencoder {path} holds a diffusers {class_name or 'model of unknown class'}, not an AutoencoderKL; {how}."
        )
    try:
        return AutoencoderKL.from_pretrained(path)
    except (OSError, ValueError, RuntimeError) as error:
        raise UserError(f"model.init_args.autoencoder {path} could not be loaded as an AutoencoderKL ({error}); {how}.") from error


def autoencoder_spec_from(source: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The spec (architecture, provenance) and the weights, named as in ``build_autoencoder(spec)``'s module, of a
    lightning_gen checkpoint or a diffusers folder."""
    from lightning_gen.checkpoints.loading import load_checkpoint_file, load_model  # checkpoints imports models: load it late

    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(
                f"model.init_args.autoencoder {path} is a folder without config.json; pass a diffusers AutoencoderKL folder "
                "or an Autoencoder checkpoint (runs/.../checkpoints/last.ckpt)."
            )
        vae = load_diffusers_autoencoder(path)
        config = {key: value for key, value in dict(vae.config).items() if not key.startswith("_")}
        spec = {"kind": "diffusers", "config": plain_data(config), "scale": float(vae.config.scaling_factor), "source": str(path)}
        return spec, {f"vae.{name}": value for name, value in vae.state_dict().items()}  # DiffusersAutoencoder holds it as .vae
    if not path.is_file():
        raise UserError(
            f"model.init_args.autoencoder {path} does not exist; train one with configs/folder_autoencoder.yaml and pass "
            "its runs/.../checkpoints/last.ckpt."
        )
    model = load_model(path)
    if not isinstance(model, Autoencoder):
        raise UserError(
            f"model.init_args.autoencoder {path} holds a {type(model).__name__}, not an Autoencoder; pass a checkpoint of "
            "lightning_gen.models.Autoencoder (e.g. from configs/folder_autoencoder.yaml)."
        )
    # From the file, not model.hparams: built inside LightningCLI's instantiation of this model, a nested module's
    # save_hyperparameters records this model's arguments.
    stored = load_checkpoint_file(path).get("hyper_parameters", {})
    hyperparameters = {key: value for key, value in stored.items() if not key.startswith("_")}
    spec = {"kind": "lightning_gen", "hyper_parameters": plain_data(hyperparameters), "source": str(path), "sha256": file_hash(path)}
    return spec, model.state_dict()


def build_autoencoder(spec: dict[str, Any], image_size: int) -> nn.Module:
    """An autoencoder of the spec's architecture (its weights come from the state_dict loaded next)."""
    if spec.get("kind") == "diffusers":
        return DiffusersAutoencoder(spec["config"], spec["scale"], image_size)
    return Autoencoder(**spec["hyper_parameters"])


class LatentDiffusion(DDPM):
    """Diffusion in the latent space of a frozen autoencoder; ``sample`` decodes to images in [0, 1].

    Sampling never clips or thresholds the predicted x0 (DDPM's ``dynamic_threshold_percentile`` is not an
    argument): latents are not bounded to [-1, 1] as pixels are.

    Args:
        autoencoder: a lightning_gen Autoencoder checkpoint (``runs/.../checkpoints/last.ckpt``) or a diffusers
            ``AutoencoderKL`` folder (its ``scaling_factor`` is the latent scale). Read once, when the model is
            built from a config; a LatentDiffusion checkpoint carries the autoencoder inside.
        hflip: mirror training images with p = 1/2, in the latents (the mirror image's cached posterior). The
            datamodule's pixel augmentation never reaches the latents: a training step reads the cache.
        latent_cache_dir: where the encode-once posteriors go; None: ``$LIGHTNING_GEN_CACHE/latents``
            (``~/.cache/lightning_gen/latents``).
        autoencoder_spec: filled in by the model (architecture and provenance of the autoencoder, stored in the
            checkpoint); never set it in a config.

    The other arguments are DDPM's (``lightning_gen.models.DDPM``); the UNet's sample size and channels come from
    the autoencoder's latent shape. Under DDP, rank 0 encodes the whole training set into the cache and the
    other ranks wait for it, then read it.
    """

    def __init__(
        self,
        data_facts: DataFacts | None = None,
        autoencoder: str = "",
        conditioning: Conditioning = "none",
        unet: dict[str, Any] | None = None,
        hflip: bool = True,
        latent_cache_dir: str | None = None,
        text_encoder: str = DEFAULT_TEXT_ENCODER,
        max_text_length: int = 64,
        text_cache_dir: str = "~/.cache/lightning_gen/text",
        prediction_type: Literal["epsilon", "v_prediction"] = "v_prediction",
        beta_schedule: Literal["linear", "cosine"] = "cosine",
        num_train_timesteps: int = 1000,
        cond_drop_prob: float = 0.1,
        guidance_scale: float = 2.0,
        sampler: Literal["ddim", "ddpm", "euler", "heun"] | None = None,
        sampling_steps: int = 50,
        validation_steps: int | None = 25,
        min_snr_gamma: float | None = 5.0,
        objective: Literal["diffusion", "flow_matching"] = "diffusion",
        flow_time_distribution: Literal["uniform", "logit_normal"] = "logit_normal",
        flow_logit_mean: float = 0.0,
        flow_logit_std: float = 1.0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["step", "epoch"] = "step",
        autoencoder_spec: dict[str, Any] | None = None,
    ):
        facts = DataFacts.coerce(data_facts)
        if autoencoder_spec is None:
            if not autoencoder:
                raise UserError(
                    "LatentDiffusion needs an autoencoder; pass --model.init_args.autoencoder runs/.../checkpoints/last.ckpt "
                    "(train one with configs/folder_autoencoder.yaml)."
                )
            autoencoder_spec, weights = autoencoder_spec_from(autoencoder)
        else:
            weights = None
        frozen = build_autoencoder(autoencoder_spec, facts.image_size)
        if weights is not None:
            frozen.load_state_dict(weights)
        check_autoencoder_fits(frozen, autoencoder_spec, facts)
        latent_channels, latent_side, _ = frozen.latent_shape
        # The UNet and the DDPM's checks see the latent space; the model's data facts stay those of the images.
        latent_facts = DataFacts(**{**facts.to_dict(), "image_size": latent_side, "channels": latent_channels})
        super().__init__(
            latent_facts,
            conditioning=conditioning,
            unet=unet,
            text_encoder=text_encoder,
            max_text_length=max_text_length,
            text_cache_dir=text_cache_dir,
            prediction_type=prediction_type,
            beta_schedule=beta_schedule,
            num_train_timesteps=num_train_timesteps,
            cond_drop_prob=cond_drop_prob,
            guidance_scale=guidance_scale,
            sampler=sampler,
            sampling_steps=sampling_steps,
            validation_steps=validation_steps,
            dynamic_threshold_percentile=None,  # latents are not bounded to [-1, 1]: no clipping or thresholding
            min_snr_gamma=min_snr_gamma,
            objective=objective,
            flow_time_distribution=flow_time_distribution,
            flow_logit_mean=flow_logit_mean,
            flow_logit_std=flow_logit_std,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            scheduler_interval=scheduler_interval,
        )
        self.data_facts = facts
        self.save_model_hyperparameters()
        # Built directly (not by the CLI), Lightning merges the init arguments of every __init__ in the stack, DDPM's
        # included; the checkpoint keeps only this class's own, so it rebuilds the model it came from.
        own = inspect.signature(LatentDiffusion.__init__).parameters
        for key in [key for key in self.hparams if key not in own]:
            del self.hparams[key]
        self.hparams["autoencoder_spec"] = autoencoder_spec
        self.autoencoder = frozen.requires_grad_(False).eval()
        self.hflip = hflip
        self.latent_cache_dir = latent_cache_dir
        self._posteriors: LatentPosteriors | None = None  # built before the first training step

    def train(self, mode: bool = True) -> LatentDiffusion:
        super().train(mode)
        self.autoencoder.eval()  # frozen: never in training mode
        return self

    def schedule_config(self) -> dict[str, Any]:
        return {**super().schedule_config(), "thresholding": False, "clip_sample": False}

    # -- the latent space -------------------------------------------------------------------------
    @property
    def scale(self) -> float:
        return float(self.autoencoder.scale)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return tuple(self.autoencoder.latent_shape)

    @property
    def diffusion_shape(self) -> tuple[int, ...]:
        return self.latent_shape

    def encode(self, x: torch.Tensor, condition: Any = None) -> torch.Tensor:
        """scale × the autoencoder's posterior mean: the (unit-variance) space the UNet diffuses."""
        return self.autoencoder.posterior(x.to(self.device, self.dtype))[0] * self.scale

    def decode(self, z: torch.Tensor, condition: Any = None) -> torch.Tensor:
        return self.autoencoder.decode(z.to(self.device, self.dtype) / self.scale)

    def reconstruct(self, x: torch.Tensor, condition: Any = None) -> torch.Tensor:
        return self.decode(self.encode(x))

    def to_diffusion_space(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode(images)

    def from_diffusion_space(self, sample: torch.Tensor) -> torch.Tensor:
        return self.decode(sample)

    def clean_batch(self, batch: dict[str, Any], generator: torch.Generator | None) -> torch.Tensor:
        """Training: a draw from each image's cached posterior (no encoder call); evaluation: the encoded mean."""
        if generator is None:
            return self.encode(batch["image"])
        if self._posteriors is None:
            raise RuntimeError("LatentDiffusion trains from its latent cache, which is built at the start of fit (on_train_start).")
        return self._posteriors.draw(batch["index"], generator, self.device).to(self.dtype) * self.scale

    # -- the encode-once cache --------------------------------------------------------------------
    def on_train_start(self) -> None:
        super().on_train_start()
        self.build_latent_cache()

    def build_latent_cache(self) -> None:
        """Rank 0 encodes the training set into the cache (or finds it); every rank then reads it."""
        trainer = self.trainer
        dataset = trainer.train_dataloader.dataset
        path = None
        if trainer.is_global_zero:
            folder = Path(self.latent_cache_dir).expanduser() if self.latent_cache_dir else default_latent_cache_dir()
            flips = 2 if self.hflip else 1
            path = open_latent_cache(dataset, self.posterior_for_cache, weights_hash(self.autoencoder), self.device, flips, folder).location
        path = trainer.strategy.broadcast(path, src=0)
        self._posteriors = self.load_latent_cache(Path(path))

    def posterior_for_cache(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return self.autoencoder.posterior(images.to(self.device, self.dtype))

    @staticmethod
    def load_latent_cache(path: Path) -> LatentPosteriors:
        from lightning_gen.models.latent_cache import load_posteriors

        loaded = load_posteriors(path, path.with_suffix(".json"))
        if loaded is None:
            raise RuntimeError(f"The latent cache {path} written by rank 0 could not be read; check that every rank sees that folder.")
        return loaded

    @property
    def latent_posteriors(self) -> LatentPosteriors | None:
        """The cache the training steps draw from (None before fit starts)."""
        return self._posteriors


def check_autoencoder_fits(autoencoder: nn.Module, spec: dict[str, Any], facts: DataFacts) -> None:
    """Refuses, in one sentence, an autoencoder for other images than the data's."""
    if isinstance(autoencoder, Autoencoder):
        trained = autoencoder.data_facts
        size, channels = trained.image_size, trained.channels
    else:  # a diffusers AutoencoderKL is convolutional: any size its downsampling factor divides
        size, channels = facts.image_size, autoencoder.image_channels
        factor = autoencoder.downsampling_factor
        if facts.image_size % factor:
            raise UserError(
                f"the autoencoder {spec.get('source', '')} downsamples by {factor} but the data serves "
                f"{facts.image_size}×{facts.image_size} images; set data.init_args.image_size to a multiple of {factor}."
            )
    if channels != facts.channels:
        raise UserError(
            f"the autoencoder {spec.get('source', '')} encodes {channels}-channel images but the data serves "
            f"{facts.channels}-channel ones; pass an autoencoder for {facts.channels}-channel images."
        )
    if size != facts.image_size:
        raise UserError(
            f"the autoencoder {spec.get('source', '')} was trained on {channels}-channel {size}×{size} images but the data "
            f"serves {facts.channels}-channel {facts.image_size}×{facts.image_size} ones; set data.init_args.image_size {size} "
            "or pass an autoencoder trained at this size."
        )
