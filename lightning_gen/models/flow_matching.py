"""Flow matching as the objective of a diffusion UNet (``model.init_args.objective: flow_matching``).

Rectified flow / conditional flow matching (Liu et al. 2023, Lipman et al. 2023) as Stable Diffusion 3
trains it, in the convention of diffusers' ``FlowMatchEulerDiscreteScheduler`` (its ``scale_noise`` and
``step``): the path from an image x0 (t = 0) to noise ε (t = 1) is the straight line
x_t = (1 − t)·x0 + t·ε, the UNet predicts its velocity v = dx_t/dt = ε − x0, and sampling integrates
dx/dt = v from t = 1 down to 0. The UNet's timestep input is t·num_train_timesteps, as diffusers'
schedulers feed it. Training times are uniform on [0, 1] or SD3's logit-normal (sigmoid of a normal).

``DDPM`` (and every model built on it) holds one ``FlowMatching`` when the objective is flow matching and
asks it for the training pair, the times, the sampler and the inversion; nothing here knows about
conditions or guidance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler
from diffusers.training_utils import compute_density_for_timestep_sampling

from lightning_gen.errors import UserError

OBJECTIVES: tuple[str, ...] = ("diffusion", "flow_matching")
FLOW_SAMPLERS: tuple[str, ...] = ("euler", "heun")  # the first is the default and the deterministic one
TIME_DISTRIBUTIONS: tuple[str, ...] = ("uniform", "logit_normal")
FLOW_SCHEDULERS = {"euler": FlowMatchEulerDiscreteScheduler, "heun": FlowMatchHeunDiscreteScheduler}

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, UNet timestep) → predicted velocity


@dataclass(frozen=True)
class FlowMatching:
    """The linear path, its velocity target, the training-time distribution and the diffusers samplers.

    Args:
        num_train_timesteps: the UNet sees t·num_train_timesteps (diffusers' convention).
        time_distribution: ``uniform`` t ~ U[0, 1], or ``logit_normal`` t = sigmoid(n), n ~ N(mean, std)
            (SD3's choice: more training on the middle of the path, where the velocity is hardest).
        logit_mean, logit_std: the normal of ``logit_normal`` (SD3: 0 and 1).
    """

    num_train_timesteps: int = 1000
    time_distribution: Literal["uniform", "logit_normal"] = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0

    def __post_init__(self) -> None:
        if self.time_distribution not in TIME_DISTRIBUTIONS:
            raise UserError(
                f"model.flow_time_distribution '{self.time_distribution}' is not one of {', '.join(TIME_DISTRIBUTIONS)}; "
                "fix it in the model section of the config."
            )
        if not self.logit_std > 0:
            raise UserError("model.flow_logit_std must be > 0; fix it in the model section of the config.")

    # -- training -------------------------------------------------------------------------------
    def draw_times(self, n: int, generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
        """n times t in [0, 1] from ``generator`` (drawn on its device, global RNG when None), returned on ``device``."""
        draw_device = device if generator is None else generator.device
        times = compute_density_for_timestep_sampling(
            "logit_normal" if self.time_distribution == "logit_normal" else "uniform",
            batch_size=n,
            logit_mean=self.logit_mean,
            logit_std=self.logit_std,
            device=draw_device,
            generator=generator,
        )
        return times.to(device, torch.float32)

    def training_pair(
        self, clean: torch.Tensor, noise: torch.Tensor, times: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_t, the UNet's timestep input, the velocity target) for images ``clean`` in [−1, 1] at times ``times``."""
        t = times.to(clean.dtype).view(-1, *[1] * (clean.dim() - 1))
        noisy = (1.0 - t) * clean + t * noise  # FlowMatchEulerDiscreteScheduler.scale_noise at sigma = t
        return noisy, times * self.num_train_timesteps, noise - clean

    # -- sampling -------------------------------------------------------------------------------
    def scheduler(self, sampler: str) -> FlowMatchEulerDiscreteScheduler | FlowMatchHeunDiscreteScheduler:
        """A fresh diffusers flow scheduler per sampling call (they keep per-run state)."""
        if sampler not in FLOW_SCHEDULERS:
            raise UserError(f"Unknown sampler '{sampler}' for a flow-matching model; use {' or '.join(FLOW_SAMPLERS)}.")
        return FLOW_SCHEDULERS[sampler](num_train_timesteps=self.num_train_timesteps)

    def predicted_clean(self, sample: torch.Tensor, velocity: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """x0 = x_t − t·v: where the straight line through x_t with velocity v starts (the progression frames)."""
        return sample - (timestep / self.num_train_timesteps).to(sample.dtype) * velocity

    @torch.no_grad()
    def invert(self, velocity: Velocity, clean: torch.Tensor, steps: int) -> torch.Tensor:
        """The noise from which Euler sampling with ``steps`` steps regenerates ``clean`` (in [−1, 1]).

        The ODE run backwards: Euler from t = 0 up to t = 1 over the sampler's own time grid, each step
        taking the velocity at its lower end (as DDIM inversion takes the model output at the current,
        less noisy timestep). diffusers has no inverse flow scheduler, hence these few lines.
        """
        grid = FlowMatchEulerDiscreteScheduler(num_train_timesteps=self.num_train_timesteps)
        grid.set_timesteps(steps, device=clean.device)
        sigmas = grid.sigmas.flip(0)  # 0, ..., 1
        sample = clean.float()
        for lower, upper in zip(sigmas[:-1], sigmas[1:]):
            timestep = (lower * self.num_train_timesteps).expand(len(sample))
            sample = sample + (upper - lower) * velocity(sample.to(clean.dtype), timestep).float()
        return sample.to(clean.dtype)
