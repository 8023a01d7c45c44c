"""DDPM: denoising diffusion on a diffusers UNet — unconditional, class-conditional or text-conditional (Imagen-style)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from diffusers import DDIMInverseScheduler, DDIMScheduler, DDPMScheduler
from diffusers.training_utils import compute_snr
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts
from lightning_gen.models.base import GenerativeModel
from lightning_gen.models.conditioning import TextConditioner, UNetInputs, check_vocabulary, conditioner_for
from lightning_gen.models.diffusion_grids import diffusion_validation_grids
from lightning_gen.models.flow_matching import FLOW_SAMPLERS, OBJECTIVES, FlowMatching
from lightning_gen.models.guidance import classifier_free_guidance, guidance_active, thresholding_config
from lightning_gen.models.lora import with_lora
from lightning_gen.models.pretrained import pretrained_diffusion
from lightning_gen.models.unets import Conditioning, build_unet, imagen_base_unet, unet_config
from lightning_gen.protocol import SamplingOptions
from lightning_gen.seeding import rand, randint, randn
from lightning_gen.text import DEFAULT_TEXT_ENCODER, CaptionEmbeddingCache, text_embedding_dim
from lightning_gen.text.cache import served_captions

BETA_SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


class DDPM(GenerativeModel):
    """Denoising diffusion (Ho et al.) with classifier-free guidance and Imagen's dynamic thresholding.

    Images arrive in [0, 1], are diffused in [−1, 1], and ``sample`` returns [0, 1].

    Args:
        conditioning: ``none``; ``class`` (reads ``batch["label"]``, classes from the data facts);
            ``text`` (reads ``batch["caption"]``, embedded by a frozen T5 through a disk cache).
        unet: overrides of the diffusers UNet arguments (see ``lightning_gen.models.unets``); the default
            is a ~1.1M-parameter 3-level UNet with attention at the lowest resolution, the Imagen base
            preset is ``imagen_base_unet()`` / ``DDPM.imagen_base``.
        text_encoder: hub name or local HF directory of the T5 encoder (text conditioning only).
        max_text_length: caption tokens kept (padded/truncated).
        text_cache_dir: where caption embeddings are cached.
        prediction_type: what the UNet predicts, ``epsilon`` (noise) or ``v_prediction`` (v = α·ε − σ·x0,
            better behaved at high noise; the default).
        beta_schedule: ``cosine`` (diffusers' squaredcos_cap_v2; keeps small images from being destroyed
            too early, the default) or ``linear`` (the original DDPM betas).
        num_train_timesteps: length of the diffusion chain.
        cond_drop_prob: chance in training that a condition is replaced by the learned null condition,
            which is what lets guidance work at sampling time.
        guidance_scale: default classifier-free guidance scale of ``sample`` (1 = no guidance).
        sampler: default sampler: ``ddim`` (deterministic, few steps) or ``ddpm`` (ancestral) for the diffusion
            objective, ``euler`` or ``heun`` for flow matching; None takes the first of those.
        sampling_steps: default number of denoising steps of ``sample``.
        validation_steps: denoising steps of the validation grids (at most ``sampling_steps``), kept
            small so that grids every epoch stay cheap; None uses ``sampling_steps``.
        dynamic_threshold_percentile: Imagen's dynamic thresholding percentile of |x0| at each step;
            None clips x0 to [−1, 1] instead.
        min_snr_gamma: Min-SNR-γ loss weighting (Hang et al. 2023; 5 speeds up training), None = unweighted;
            diffusion objective only.
        objective: ``diffusion`` (the noise schedule above, ``prediction_type``, ``beta_schedule``, Min-SNR,
            thresholding) or ``flow_matching`` (straight path x_t = (1 − t)·x0 + t·ε, velocity target ε − x0,
            diffusers' flow Euler/Heun samplers; see ``lightning_gen.models.flow_matching`` and docs/flow-matching.md).
        flow_time_distribution: flow matching's training times, ``uniform`` or ``logit_normal`` (SD3).
        flow_logit_mean, flow_logit_std: the normal of the logit-normal times.
        pretrained: Hub id or local diffusers folder whose UNet and noise schedule the model starts from
            (``lightning_gen.models.pretrained``; replaces ``unet`` and the schedule settings). None = from scratch.
        lora: LoRA adapter settings (``rank``, ``alpha``, ``target_modules``, ``dropout``): only the adapter
            trains (``lightning_gen.models.lora``). None = every weight trains.
    """

    def __init__(
        self,
        data_facts: DataFacts | None = None,
        conditioning: Conditioning = "none",
        unet: dict[str, Any] | None = None,
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
        dynamic_threshold_percentile: float | None = 0.95,
        min_snr_gamma: float | None = 5.0,
        objective: Literal["diffusion", "flow_matching"] = "diffusion",
        flow_time_distribution: Literal["uniform", "logit_normal"] = "logit_normal",
        flow_logit_mean: float = 0.0,
        flow_logit_std: float = 1.0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["step", "epoch"] = "step",
        pretrained: str | None = None,
        lora: dict[str, Any] | None = None,
    ):
        super().__init__(data_facts, optimizer, lr_scheduler, scheduler_interval)
        self.save_model_hyperparameters()
        self.conditioning = conditioning
        self.prediction_type = prediction_type
        self.beta_schedule = beta_schedule
        self.num_train_timesteps = num_train_timesteps
        self.cond_drop_prob = cond_drop_prob
        self.guidance_scale = guidance_scale
        self.objective = objective
        self.flow = None  # the FlowMatching objective, or None for diffusion
        if objective == "flow_matching":
            self.flow = FlowMatching(num_train_timesteps, flow_time_distribution, flow_logit_mean, flow_logit_std)
        self.sampler = sampler or self.sampler_names[0]
        self.sampling_steps = sampling_steps
        self.validation_steps = validation_steps
        self.dynamic_threshold_percentile = dynamic_threshold_percentile
        self.min_snr_gamma = min_snr_gamma
        self._check_settings()
        facts = self.data_facts
        self.num_classes = facts.num_classes
        check_vocabulary(conditioning, facts, "set model.conditioning to none")
        text_cache, text_dim = None, None
        self.null_text_embedding: nn.Parameter | None = None  # None outside text models: no state_dict entry
        if conditioning == "text":
            text_dim = text_embedding_dim(text_encoder)
            text_cache = CaptionEmbeddingCache(text_encoder, max_text_length, text_cache_dir)
            # The learned "no caption" sequence that guidance contrasts against (Imagen's null text embedding).
            self.null_text_embedding = nn.Parameter(0.02 * torch.randn(max_text_length, text_dim))
        self.conditioner = conditioner_for(conditioning, facts, type(self).__name__, text_cache)
        if pretrained is None:
            config = unet_config(conditioning, unet, facts.image_size, facts.channels, self.num_classes, text_dim)
            self.unet = build_unet(conditioning, config)
        else:  # the UNet and the noise schedule come from the diffusers checkpoint
            base = pretrained_diffusion(pretrained, facts, conditioning)
            self.unet = base.unet
            for name, value in base.schedule.items():
                setattr(self, name, value)
            self._check_settings()
        self.unet = with_lora(self.unet, lora)
        self.noise_schedule = DDPMScheduler(**self.schedule_config())

    @classmethod
    def imagen_base(cls, data_facts: DataFacts | None = None, text_encoder: str = "google/t5-v1_1-large", **kwargs: Any) -> DDPM:
        """Seed 002's Imagen base model: text-conditioned, UNet from ``imagen_base_unet()`` (see its docstring for the YAML)."""
        return cls(data_facts, conditioning="text", unet=imagen_base_unet(), text_encoder=text_encoder, **kwargs)

    def _check_settings(self) -> None:
        checks = [
            (self.conditioning in ("none", "class", "text"), "model.conditioning must be none, class or text"),
            (self.prediction_type in ("epsilon", "v_prediction"), "model.prediction_type must be epsilon or v_prediction"),
            (self.beta_schedule in BETA_SCHEDULES, "model.beta_schedule must be linear or cosine"),
            (self.objective in OBJECTIVES, "model.objective must be diffusion or flow_matching"),
            (self.sampler in self.sampler_names, f"model.sampler must be {' or '.join(self.sampler_names)} for objective {self.objective}"),
            (0.0 <= self.cond_drop_prob < 1.0, "model.cond_drop_prob must be in [0, 1)"),
            (self.guidance_scale >= 0.0, "model.guidance_scale must be >= 0 (1 = no guidance)"),
            (1 <= self.sampling_steps <= self.num_train_timesteps, "model.sampling_steps must be in [1, num_train_timesteps]"),
            (self.validation_steps is None or self.validation_steps >= 1, "model.validation_steps must be >= 1 or null"),
            (
                self.dynamic_threshold_percentile is None or 0.0 < self.dynamic_threshold_percentile <= 1.0,
                "model.dynamic_threshold_percentile must be in (0, 1] or null",
            ),
            (self.min_snr_gamma is None or self.min_snr_gamma > 0, "model.min_snr_gamma must be > 0 or null"),
            (
                self.flow is None or self.min_snr_gamma is None,
                "model.min_snr_gamma weights the diffusion objective's noise levels and does not apply to objective "
                "flow_matching, so set it to null",
            ),
        ]
        for ok, rule in checks:
            if not ok:
                raise UserError(f"{rule}; fix it in the model section of the config.")

    # -- caption embeddings, encoded once before the first step -----------------------------------
    def on_fit_start(self) -> None:
        self.fill_caption_cache()

    def on_validation_start(self) -> None:
        if self.trainer.state.fn == "validate":  # a fit filled it at its start
            self.fill_caption_cache()

    def on_test_start(self) -> None:
        self.fill_caption_cache()

    def fill_caption_cache(self) -> None:
        """Every caption the trainer's datamodule serves, encoded now (rank-sharded), so that steps only read."""
        trainer = self.trainer
        if self.text_cache is not None and trainer.datamodule is not None:
            captions = served_captions(trainer.datamodule)
            self.text_cache.fill(captions, self.device, trainer.global_rank, trainer.world_size)

    # -- noise schedules ------------------------------------------------------------------------
    def schedule_config(self) -> dict[str, Any]:
        return {
            "num_train_timesteps": self.num_train_timesteps,
            "beta_schedule": BETA_SCHEDULES[self.beta_schedule],
            "prediction_type": self.prediction_type,
            # Few-step sampling must start from the last, pure-noise timestep ("leading" would start at 666 of 1000 for 3 steps).
            "timestep_spacing": "trailing",
            **thresholding_config(self.dynamic_threshold_percentile),
        }

    @property
    def sampler_names(self) -> tuple[str, ...]:
        """The objective's samplers; the first is the default and the deterministic one."""
        return ("ddim", "ddpm") if self.flow is None else FLOW_SAMPLERS

    def sampling_scheduler(self, sampler: str) -> Any:
        """A fresh scheduler per sampling call: diffusers schedulers keep per-run state (their timesteps)."""
        if self.flow is not None:
            return self.flow.scheduler(sampler)
        if sampler not in ("ddim", "ddpm"):
            raise UserError(f"Unknown sampler '{sampler}'; use ddim or ddpm.")
        return (DDIMScheduler if sampler == "ddim" else DDPMScheduler)(**self.schedule_config())

    # -- conditions: all of it through self.conditioner (lightning_gen.models.conditioning) ------------
    @property
    def text_cache(self) -> CaptionEmbeddingCache | None:
        return self.conditioner.cache if isinstance(self.conditioner, TextConditioner) else None

    def batch_condition(self, batch: dict[str, Any]) -> Any:
        return self.conditioner.batch_condition(batch)

    def condition_inputs(self, condition: Any, n: int) -> UNetInputs:
        """The UNet keyword arguments for ``condition`` (class ids or captions); None gives the null condition."""
        return self.conditioner.unet_inputs(condition, n, self.device, self.null_text_embedding)

    def null_inputs(self, n: int) -> UNetInputs:
        return self.conditioner.null_inputs(n, self.device, self.null_text_embedding)

    def drop_condition(self, inputs: UNetInputs, dropped: torch.Tensor) -> UNetInputs:
        """Replaces the condition of the rows where ``dropped`` is True by the learned null condition."""
        return self.conditioner.drop(inputs, dropped, self.null_text_embedding)

    @property
    def condition_vocabulary(self) -> tuple[str, ...]:
        return self.conditioner.vocabulary

    def spread_conditions(self, n: int) -> torch.Tensor | None:
        """n class ids cycling evenly over the classes (for ``evaluate`` with a judge); None unless class-conditional."""
        return self.conditioner.spread(n, self.device)

    def sampling_options(self) -> SamplingOptions:
        return SamplingOptions(
            noise_shape=self.diffusion_shape,
            defaults={"steps": self.sampling_steps, "guidance_scale": self.guidance_scale, "sampler": self.sampler},
            choices={"sampler": self.sampler_names},
            deterministic_sampler=self.sampler_names[0],
        )

    def condition_from_names(self, names: Sequence[str], n: int | None = None) -> Any:
        """Class ids (or captions) of ``names`` for ``n`` samples: one name broadcast, or one per sample (``n`` None: one per name)."""
        return self.conditioner.from_names(names, n, self.device)

    def condition_from_prompt(self, prompt: str, n: int | None = None) -> Any:
        """The caption itself for a text model; a class model takes the class the prompt names."""
        return self.conditioner.from_prompt(prompt, n, self.device)

    def condition_names(self, condition: Any) -> list[str]:
        return self.conditioner.names(condition)

    # -- the space diffused: pixels in [-1, 1]; LatentDiffusion swaps in its autoencoder's scaled latents ------
    @property
    def diffusion_shape(self) -> tuple[int, ...]:
        return tuple(self.image_shape)

    def to_diffusion_space(self, images: torch.Tensor) -> torch.Tensor:
        return images * 2.0 - 1.0

    def from_diffusion_space(self, sample: torch.Tensor) -> torch.Tensor:
        return self._to_unit_range(sample)

    def clean_batch(self, batch: dict[str, Any], generator: torch.Generator | None) -> torch.Tensor:
        """The clean sample of each image the loss diffuses; ``generator`` is None in evaluation."""
        return self.to_diffusion_space(batch["image"])

    # -- training -------------------------------------------------------------------------------
    def loss_weights(self, timesteps: torch.Tensor) -> torch.Tensor:
        """Min-SNR-γ: per-timestep weights min(SNR, γ)/SNR for ε, min(SNR, γ)/(SNR + 1) for v; 1 if disabled."""
        if self.min_snr_gamma is None:
            return torch.ones(len(timesteps), device=timesteps.device)
        snr = compute_snr(self.noise_schedule, timesteps)
        clipped = snr.clamp(max=self.min_snr_gamma)
        return clipped / (snr + 1.0) if self.prediction_type == "v_prediction" else clipped / snr

    def draw_timesteps(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """Training timesteps: integer steps of the chain (diffusion), times t in [0, 1] (flow matching)."""
        if self.flow is not None:
            return self.flow.draw_times(n, generator, self.device)
        return randint(self.num_train_timesteps, (n,), generator, self.device)

    def training_pair(
        self, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(noisy input, the UNet's timestep input, target) of the objective."""
        if self.flow is not None:
            return self.flow.training_pair(clean, noise, timesteps)
        noisy = self.noise_schedule.add_noise(clean, noise, timesteps)
        target = noise if self.prediction_type == "epsilon" else self.noise_schedule.get_velocity(clean, noise, timesteps)
        return noisy, timesteps, target

    def diffusion_loss(
        self,
        batch: dict[str, Any],
        generator: torch.Generator | None = None,
        drop: bool = True,
        draws: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``draws`` = (noise, timesteps) replaces what would be drawn from ``generator``."""
        clean = self.clean_batch(batch, generator if draws is None else None)
        n = len(clean)
        if draws is None:
            noise = randn(clean.shape, generator, self.device).to(clean.dtype)
            timesteps = self.draw_timesteps(n, generator)
        else:
            noise, timesteps = draws[0].to(self.device, clean.dtype), draws[1].to(self.device)
        inputs = self.condition_inputs(self.batch_condition(batch), n)
        if drop and inputs and self.cond_drop_prob > 0:
            inputs = self.drop_condition(inputs, rand((n,), generator, self.device) < self.cond_drop_prob)
        noisy, model_timesteps, target = self.training_pair(clean, noise, timesteps)
        prediction = self.unet(noisy, model_timesteps, **inputs).sample
        per_image = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
        return (self.loss_weights(timesteps) * per_image).mean()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.diffusion_loss(batch, self.training_generator())
        self.log_training({"train/loss": loss}, batch_size=len(batch["image"]), prog_bar=True)
        return loss

    def evaluation_draws(self, batch: dict[str, Any], batch_idx: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise and timestep of each image from a generator seeded by its dataset index: the loss does not
        depend on batching or on how DDP shards the set, and draws no global random numbers (which would
        change the course of training). A batch without indices numbers its images from ``batch_idx``."""
        size = len(batch["image"])
        indices = batch["index"] if "index" in batch else torch.arange(size) + batch_idx * size
        noise, timesteps = [], []
        for index in indices.tolist():
            generator = torch.Generator().manual_seed(index)
            noise.append(torch.randn(self.diffusion_shape, generator=generator))
            if self.flow is not None:
                timesteps.append(self.flow.draw_times(1, generator, "cpu")[0])
            else:
                timesteps.append(torch.randint(self.num_train_timesteps, (), generator=generator))
        return torch.stack(noise), torch.stack(timesteps)

    def _evaluate(self, batch: dict[str, Any], batch_idx: int, stage: str) -> None:
        loss = self.diffusion_loss(batch, drop=False, draws=self.evaluation_draws(batch, batch_idx))
        # sync_dist: under DDP each rank sees a shard; the logged value is the mean over the whole set.
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", batch_size=len(batch["image"]), sync_dist=True)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    # -- sampling -------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        n: int,
        condition: Any = None,
        generator: torch.Generator | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
        sampler: Literal["ddim", "ddpm", "euler", "heun"] | None = None,
        initial_noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``n`` images in [0, 1]. ``condition``: class ids (tensor/list) or captions, one or one per image;
        None samples from the null condition. ``initial_noise`` (n×C×H×W) replaces the noise drawn from
        ``generator``. Unset arguments take the model's defaults."""
        images, _ = self._denoise(n, condition, generator, steps, guidance_scale, sampler, initial_noise=initial_noise)
        return self.from_diffusion_space(images)

    @torch.no_grad()
    def denoising_progression(
        self, condition: Any = None, generator: torch.Generator | None = None, num_frames: int = 8, steps: int | None = None
    ) -> torch.Tensor:
        """N×F×C×H×W in [0, 1]: the predicted x0 at ``num_frames`` evenly spaced sampling steps (the last
        is the final sample), one row per condition (N = 1 for None or a single caption). Uses the default
        sampler and guidance, with ``steps`` (default ``sampling_steps``) but at least ``num_frames`` steps."""
        if condition is None or isinstance(condition, str):
            n = 1
        else:
            n = condition.numel() if isinstance(condition, torch.Tensor) else len(condition)
        steps = max(steps or self.sampling_steps, num_frames)
        _, frames = self._denoise(n, condition, generator, steps, None, None, num_frames)
        return torch.stack([self.from_diffusion_space(frame) for frame in frames], dim=1)

    def _denoise(
        self,
        n: int,
        condition: Any,
        generator: torch.Generator | None,
        steps: int | None,
        guidance_scale: float | None,
        sampler: str | None,
        num_frames: int = 0,
        initial_noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        scheduler = self.sampling_scheduler(sampler or self.sampler)
        scheduler.set_timesteps(steps or self.sampling_steps, device=self.device)
        scale = self.guidance_scale if guidance_scale is None else guidance_scale
        inputs = self.condition_inputs(condition, n)
        guided = guidance_active(scale, condition is not None and bool(inputs))  # inputs: {} when unconditional
        if guided:  # conditional and unconditional passes share one UNet call on a doubled batch
            null = self.null_inputs(n)
            inputs = {key: torch.cat([value, null[key]]) for key, value in inputs.items()}
        keep = set(torch.linspace(0, len(scheduler.timesteps) - 1, num_frames).round().long().tolist()) if num_frames else set()
        step_options = {"use_clipped_model_output": True} if isinstance(scheduler, DDIMScheduler) else {}
        if initial_noise is None:
            initial_noise = randn((n, *self.diffusion_shape), generator, self.device)
        sample = initial_noise.to(self.device, self.dtype)
        frames = []
        for index, timestep in enumerate(scheduler.timesteps):
            model_input = torch.cat([sample, sample]) if guided else sample
            output = self.unet(model_input, timestep.expand(len(model_input)), **inputs).sample
            if guided:
                conditional, unconditional = output.chunk(2)
                output = classifier_free_guidance(conditional, unconditional, scale)
            step = scheduler.step(output, timestep, sample, generator=generator, **step_options)
            if index in keep:
                frames.append(step.pred_original_sample if self.flow is None else self.flow.predicted_clean(sample, output, timestep))
            sample = step.prev_sample
        return sample, frames

    @torch.no_grad()
    def invert(self, x: torch.Tensor, condition: Any = None, steps: int | None = None) -> torch.Tensor:
        """DDIM inversion (flow matching: the ODE run backwards): the noise from which ``sample(...,
        initial_noise=noise, steps=steps, sampler=ddim / euler, guidance_scale=1.0)`` regenerates ``x``
        (N×C×H×W in [0, 1]) approximately; the same ``condition`` (None: the null condition) must be given to both."""
        if self.flow is not None:
            inputs = self.condition_inputs(condition, len(x))
            clean = self.to_diffusion_space(x.to(self.device, self.dtype))
            return self.flow.invert(
                lambda sample, timestep: self.unet(sample, timestep, **inputs).sample, clean, steps or self.sampling_steps
            )
        # diffusers' inverse scheduler runs the DDIM steps backwards on the same (trailing) timesteps; no
        # clipping of x0 here, it would make the path irreversible.
        config = {
            key: value
            for key, value in self.schedule_config().items()
            if key not in ("thresholding", "dynamic_thresholding_ratio", "sample_max_value")
        }
        scheduler = DDIMInverseScheduler(**{**config, "clip_sample": False})
        scheduler.set_timesteps(steps or self.sampling_steps, device=self.device)
        inputs = self.condition_inputs(condition, len(x))
        sample = self.to_diffusion_space(x.to(self.device, self.dtype))
        for timestep in scheduler.timesteps:
            output = self.unet(sample, timestep.expand(len(sample)), **inputs).sample
            sample = scheduler.step(output, timestep, sample).prev_sample
        return sample

    @torch.no_grad()
    def validation_grids(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``class_rows`` or ``prompt_rows`` (a row per fixed condition) and ``denoising`` (one progression)."""
        steps = min(self.validation_steps or self.sampling_steps, self.sampling_steps)
        return diffusion_validation_grids(self, batch, generator, steps)

    @staticmethod
    def _to_unit_range(images: torch.Tensor) -> torch.Tensor:
        return ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0)
