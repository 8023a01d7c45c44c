"""Diffusion prior on a VAE's flat latent (two-stage VAE, Dai & Wipf 2019): a small MLP denoiser trained on the
standardised posterior means of training images, sampled with DDIM instead of drawing z from N(0, I).

A second, tiny diffusion model learns the aggregate posterior's shape however far from Gaussian it is (a Gaussian
mixture needs many components for curved or thin regions). The noise schedule and the DDIM sampler are diffusers';
the denoiser is a plain residual MLP (diffusers' denoisers are UNets/transformers for images), written here.

The density is not an ``nn.Module`` of the VAE: the VAE's optimizer never trains it, weight averaging never blends
it, and DDP never syncs it. Its weights and standardisation travel as the latent prior's extra state, plain tensors
(``denoiser.<name>``, ``code_mean``, ``code_std``), which ``torch.load(weights_only=True)`` and weight snapshots read.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler
from diffusers.models.embeddings import get_timestep_embedding
from torch import nn

TRAIN_TIMESTEPS = 1000
DENOISER_PREFIX = "denoiser."


class ResidualBlock(nn.Module):
    """h + W₂ SiLU(W₁ SiLU(LayerNorm h) + time), pre-norm as in diffusion UNets' ResNet blocks."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.first = nn.Linear(width, width)
        self.time = nn.Linear(width, width)
        self.second = nn.Linear(width, width)

    def forward(self, hidden: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        return hidden + self.second(F.silu(self.first(F.silu(self.norm(hidden))) + self.time(time)))


class Denoiser(nn.Module):
    """v(x_t, t): residual MLP blocks on the code, with a sinusoidal embedding of t added inside every block."""

    def __init__(self, latent_dim: int, width: int = 512, blocks: int = 4):
        super().__init__()
        self.width = width
        self.embed_time = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU())
        self.input = nn.Linear(latent_dim, width)
        self.blocks = nn.ModuleList(ResidualBlock(width) for _ in range(blocks))
        self.output_norm = nn.LayerNorm(width)
        self.output = nn.Linear(width, latent_dim)

    def forward(self, codes: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        time = self.embed_time(get_timestep_embedding(timesteps, self.width, flip_sin_to_cos=True, downscale_freq_shift=0))
        hidden = self.input(codes)
        for block in self.blocks:
            hidden = block(hidden, time)
        return self.output(F.silu(self.output_norm(hidden)))


def seeded_denoiser(latent_dim: int, width: int, blocks: int, seed: int) -> Denoiser:
    """A denoiser whose initial weights depend on ``seed`` alone (every DDP rank builds the same one); the global
    CPU RNG is left as it was, so building it never shifts the training's random stream."""
    with torch.random.fork_rng(devices=[]), torch.inference_mode(False):
        torch.default_generator.manual_seed(seed)  # the CPU generator only: no CUDA generator is touched
        return Denoiser(latent_dim, width, blocks)


def noise_scheduler() -> DDIMScheduler:
    """Cosine schedule (Nichol & Dhariwal), 1000 training steps, v-prediction (Salimans & Ho 2022): the cosine
    schedule's last ᾱ is 2e-9, where an ε-prediction's x₀ = (x_t − √(1−ᾱ) ε̂)/√ᾱ multiplies any error by 2·10⁴,
    while v's x₀ = √ᾱ x_t − √(1−ᾱ) v̂ stays bounded. No clipping (standardised codes reach beyond ±1);
    "trailing" spacing so a 50-step DDIM run starts at t = 999, from pure noise."""
    return DDIMScheduler(
        num_train_timesteps=TRAIN_TIMESTEPS,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
        clip_sample=False,
        timestep_spacing="trailing",
    )


class DenoisingDensity:
    """The latent density of a diffusion denoiser; ``fit`` trains it on codes, ``sample`` runs DDIM (η = 0).

    Args:
        latent_dim: size of z.
        fit_steps: Adam steps of the first fit; a refit continues from the previous denoiser (warm start) for
            ``refit_steps`` (default a quarter of ``fit_steps``): the codes move little between validations.
        width, blocks: the MLP's hidden width and number of residual blocks.
        sampling_steps: DDIM steps per sample.
        batch_size, lr: of the fit (cosine decay of the learning rate to 0 over ``fit_steps``).
    """

    def __init__(
        self,
        latent_dim: int,
        fit_steps: int = 2000,
        width: int = 512,
        refit_steps: int | None = None,
        blocks: int = 4,
        sampling_steps: int = 50,
        batch_size: int = 256,
        lr: float = 1e-3,
    ):
        self.latent_dim, self.fit_steps, self.width, self.blocks = latent_dim, fit_steps, width, blocks
        self.refit_steps = max(1, fit_steps // 4) if refit_steps is None else refit_steps
        self.sampling_steps, self.batch_size, self.lr = sampling_steps, batch_size, lr
        self.scheduler = noise_scheduler()
        self.denoiser: Denoiser | None = None
        self.code_mean: torch.Tensor | None = None
        self.code_std: torch.Tensor | None = None

    @property
    def fitted(self) -> bool:
        return self.denoiser is not None

    def fit(self, codes: torch.Tensor, seed: int = 0) -> None:
        """Trains on ``codes`` (N×D) standardised per dimension; seeded, no collective: the same codes and seed
        give every rank the same denoiser. Runs with gradients even inside validation's inference mode."""
        device = codes.device
        with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device.type, enabled=False):
            codes = codes.detach().float().clone()  # a normal tensor, not an inference one, so autograd may use it
            self.code_mean = codes.mean(0)
            self.code_std = codes.std(0).clamp_min(1e-6) if len(codes) > 1 else torch.ones_like(self.code_mean)
            standardised = (codes - self.code_mean) / self.code_std
            steps = self.refit_steps
            if self.denoiser is None:
                self.denoiser, steps = seeded_denoiser(self.latent_dim, self.width, self.blocks, seed), self.fit_steps
            denoiser = self.denoiser.to(device).train()
            generator = torch.Generator(device=device).manual_seed(seed)
            optimizer = torch.optim.Adam(denoiser.parameters(), lr=self.lr)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, steps))
            batch = min(self.batch_size, len(codes))
            for _ in range(steps):
                rows = torch.randint(len(codes), (batch,), generator=generator, device=device)
                timesteps = torch.randint(TRAIN_TIMESTEPS, (batch,), generator=generator, device=device)
                noise = torch.randn(batch, self.latent_dim, generator=generator, device=device)
                clean = standardised[rows]
                noisy = self.scheduler.add_noise(clean, noise, timesteps)
                loss = F.mse_loss(denoiser(noisy, timesteps), self.scheduler.get_velocity(clean, noise, timesteps))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
            denoiser.eval()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
        """n codes: DDIM from noise drawn with ``generator`` (η = 0, so nothing else is random)."""
        denoiser = self.denoiser.to(device)
        self.scheduler.set_timesteps(self.sampling_steps, device=device)
        codes = torch.randn(n, self.latent_dim, generator=generator, device=device)
        for timestep in self.scheduler.timesteps:
            velocity = denoiser(codes, timestep.expand(n))
            codes = self.scheduler.step(velocity, timestep, codes).prev_sample
        return codes * self.code_std.to(device) + self.code_mean.to(device)

    # Plain tensors in a flat dict: what torch.load(weights_only=True), snapshots and published files hold.
    def get_extra_state(self) -> dict[str, Any]:
        if self.denoiser is None:
            return {"fitted": False}
        # Copies: a refit updates the weights in place, and a state taken earlier (a snapshot's) must not follow.
        weights = {DENOISER_PREFIX + name: value.detach().cpu().clone() for name, value in self.denoiser.state_dict().items()}
        return {"fitted": True, "code_mean": self.code_mean.cpu(), "code_std": self.code_std.cpu(), **weights}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if not state.get("fitted"):
            self.denoiser = self.code_mean = self.code_std = None
            return
        denoiser = seeded_denoiser(self.latent_dim, self.width, self.blocks, 0)
        weights = {name[len(DENOISER_PREFIX) :]: value for name, value in state.items() if name.startswith(DENOISER_PREFIX)}
        with torch.inference_mode(False):
            denoiser.load_state_dict(weights)  # strict: a checkpoint of another width or depth is an error
        self.denoiser = denoiser.eval()
        self.code_mean, self.code_std = state["code_mean"].float(), state["code_std"].float()
