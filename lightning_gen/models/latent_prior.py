"""Ex-post latent density (Ghosh et al. 2020, "From variational to deterministic autoencoders"): a Gaussian
mixture fitted on the posterior means of training images, sampled instead of N(0, I).

With a small β the aggregate posterior is far from N(0, I), so z ~ N(0, I) decodes to blobs; z drawn from a
mixture fitted where the training images' codes actually lie decodes to images like the training set.

EM is written here (about 40 lines, full or diagonal covariance) rather than taken from scikit-learn: it runs
on the model's device in torch, needs no extra dependency, and its result is a handful of tensors kept in the
checkpoint (``get_extra_state``), which ``torch.load(weights_only=True)`` reads.

``LatentPrior`` keeps the training images and holds one ``LatentDensity``: this mixture, or the diffusion
denoiser of denoising_prior.py (``prior: diffusion``).
"""

from __future__ import annotations

import math
from typing import Any, Literal, Protocol

import torch
from torch import nn

Covariance = Literal["full", "diag"]
REGULARISATION = 1e-4  # added to every variance: keeps components of a few points from collapsing


class GaussianMixture:
    """Mixture weights (K), means (K×D) and Cholesky factors of the covariances (K×D×D); float64 while fitting."""

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, scale_tril: torch.Tensor):
        self.weights, self.means, self.scale_tril = weights, means, scale_tril

    @property
    def covariances(self) -> torch.Tensor:
        return self.scale_tril @ self.scale_tril.transpose(-1, -2)

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The mixture's mean and covariance: Σ w μ and Σ w (Σ_k + μ μᵀ) − mean meanᵀ."""
        mean = (self.weights[:, None] * self.means).sum(0)
        second = (self.weights[:, None, None] * (self.covariances + self.means[:, :, None] * self.means[:, None, :])).sum(0)
        return mean, second - mean[:, None] * mean[None, :]

    def log_prob_components(self, x: torch.Tensor) -> torch.Tensor:
        """N×K: log w_k + log N(x | μ_k, Σ_k)."""
        # ‖L_k⁻¹ (x − μ_k)‖² by one triangular solve per component (D×N right-hand sides): no inverse, no
        # N×K×D temporary, and about 2.5× faster on the CPU than one batched einsum over the components.
        mahalanobis = torch.stack(
            [
                torch.linalg.solve_triangular(tril, (x - mean).T, upper=False).pow(2).sum(0)
                for tril, mean in zip(self.scale_tril, self.means)
            ],
            1,
        )
        log_det = self.scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        dim = x.shape[1]
        return self.weights.log()[None] - 0.5 * (dim * math.log(2 * math.pi) + mahalanobis) - log_det[None]

    def sample(self, n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
        parts = {name: value.to(device) for name, value in (("w", self.weights), ("m", self.means), ("l", self.scale_tril))}
        component = torch.multinomial(parts["w"].float(), n, replacement=True, generator=generator)
        noise = torch.randn(n, self.means.shape[1], generator=generator, device=device, dtype=parts["m"].dtype)
        return parts["m"][component] + (parts["l"][component] @ noise[:, :, None]).squeeze(-1)


def weighted_scatter(x: torch.Tensor, means: torch.Tensor, responsibility: torch.Tensor) -> torch.Tensor:
    """K×D×D: Σ_n r_nk (x_n − μ_k)(x_n − μ_k)ᵀ, one D×D product per component of the centred points scaled by
    √r (no K×N×D temporaries; about 2× faster than the batched product on the CPU)."""
    scatter = []
    for k in range(len(means)):
        centred = (x - means[k]) * responsibility[:, k : k + 1].sqrt()
        scatter.append(centred.T @ centred)
    return torch.stack(scatter)


def fit_gaussian_mixture(
    x: torch.Tensor, components: int, covariance: Covariance = "full", iterations: int = 100, seed: int = 0, tolerance: float = 1e-3
) -> GaussianMixture:
    """EM from means at randomly chosen points (seeded: every rank fitting the same data gets the same mixture),
    until the mean log-likelihood gains less than ``tolerance`` (scikit-learn's default criterion)."""
    x = x.detach().double()
    count, dim = x.shape
    components = max(1, min(components, count))
    generator = torch.Generator(device="cpu").manual_seed(seed)
    start = torch.randperm(count, generator=generator)[:components].to(x.device)
    eye = torch.eye(dim, dtype=x.dtype, device=x.device)
    shared = torch.cov(x.T).reshape(dim, dim) + REGULARISATION * eye if count > 1 else eye
    mixture = GaussianMixture(
        torch.full((components,), 1.0 / components, dtype=x.dtype, device=x.device),
        x[start].clone(),
        torch.linalg.cholesky(shared).expand(components, dim, dim).clone(),
    )
    previous = -math.inf
    for _ in range(iterations):
        joint = mixture.log_prob_components(x)
        log_likelihood = torch.logsumexp(joint, 1)
        responsibility = (joint - log_likelihood[:, None]).exp()  # E step: N×K
        mass = responsibility.sum(0) + 1e-10  # M step
        means = responsibility.T @ x / mass[:, None]
        if covariance == "full":
            covariances = weighted_scatter(x, means, responsibility) / mass[:, None, None]
        else:
            diff = x[None] - means[:, None]  # K×N×D
            covariances = torch.diag_embed(torch.einsum("nk,kni->ki", responsibility, diff.pow(2)) / mass[:, None])
        mixture = GaussianMixture(mass / count, means, torch.linalg.cholesky(covariances + REGULARISATION * eye))
        mean_log_likelihood = log_likelihood.mean().item()
        if abs(mean_log_likelihood - previous) < tolerance:
            break
        previous = mean_log_likelihood
    return mixture


class LatentDensity(Protocol):
    """What a latent prior samples from once fitted: the mixture below or the diffusion denoiser (denoising_prior.py).

    ``fit`` is seeded and runs no collective (every DDP rank fits the same codes with the same seed); the state is a
    flat dict of plain tensors and a ``fitted`` flag, so weights_only loading, snapshots and published files read it."""

    @property
    def fitted(self) -> bool: ...

    def fit(self, codes: torch.Tensor, seed: int = 0) -> None: ...

    def sample(self, n: int, generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor: ...

    def get_extra_state(self) -> dict[str, Any]: ...

    def set_extra_state(self, state: dict[str, Any]) -> None: ...


class MixtureDensity:
    """The Gaussian mixture as a LatentDensity."""

    def __init__(self, components: int = 10, covariance: Covariance = "full"):
        self.components, self.covariance = components, covariance
        self.mixture: GaussianMixture | None = None

    @property
    def fitted(self) -> bool:
        return self.mixture is not None

    def fit(self, codes: torch.Tensor, seed: int = 0) -> None:
        self.mixture = fit_gaussian_mixture(codes, self.components, self.covariance, seed=seed)

    def sample(self, n: int, generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
        return self.mixture.sample(n, generator, device).float()

    def get_extra_state(self) -> dict[str, Any]:
        if self.mixture is None:
            return {"fitted": False}
        mixture = self.mixture
        return {"fitted": True, "weights": mixture.weights.cpu(), "means": mixture.means.cpu(), "scale_tril": mixture.scale_tril.cpu()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if not state.get("fitted"):
            self.mixture = None
            return
        self.mixture = GaussianMixture(state["weights"], state["means"], state["scale_tril"])


class LatentPrior(nn.Module):
    """The latent density a VAE samples from: N(0, I) until ``density`` is fitted, then that density.

    Holds no parameters or buffers (weight averaging would blend a fresh fit with a stale copy): the density
    (not a submodule) travels as the module's extra state in ``state_dict``. Training images seen by the model are
    kept in a bounded ring of the most recent ones, to be encoded by the current weights when the density is refitted.

    Args:
        latent_dim: size of z.
        components: mixture components (when ``density`` is not given).
        covariance: ``full`` or ``diag`` (when ``density`` is not given).
        fit_images: most recent training images kept for the fit.
        density: what is fitted; a Gaussian mixture of ``components`` and ``covariance`` by default.
    """

    def __init__(
        self,
        latent_dim: int,
        components: int = 10,
        covariance: Covariance = "full",
        fit_images: int = 4096,
        density: LatentDensity | None = None,
    ):
        super().__init__()
        self.latent_dim, self.components, self.covariance, self.fit_images = latent_dim, components, covariance, fit_images
        self.density: LatentDensity = MixtureDensity(components, covariance) if density is None else density
        self._images: torch.Tensor | None = None
        self._conditions: torch.Tensor | None = None
        self._filled = 0
        self._position = 0

    @property
    def mixture(self) -> GaussianMixture | None:
        """The fitted Gaussian mixture, or None (not fitted yet, or the density is not a mixture)."""
        return self.density.mixture if isinstance(self.density, MixtureDensity) else None

    @property
    def fitted(self) -> bool:
        return self.density.fitted

    def observe(self, images: torch.Tensor, condition: torch.Tensor | None = None) -> None:
        """Keeps the batch (images as uint8 on the CPU: 4096 images of 64×64 are 48 MB) and its conditions for the next fit."""
        images = images.detach()[-self.fit_images :]
        batch = (images.clamp(0, 1) * 255).round().to(torch.uint8).cpu()
        conditions = None if condition is None else torch.as_tensor(condition).detach()[-self.fit_images :].float().cpu()
        if self._images is None:
            self._images = torch.empty((self.fit_images, *batch.shape[1:]), dtype=torch.uint8)
            if conditions is not None:
                self._conditions = torch.empty((self.fit_images, *conditions.shape[1:]))
        rows = (torch.arange(len(batch)) + self._position) % self.fit_images
        self._images[rows] = batch
        if self._conditions is not None and conditions is not None:
            self._conditions[rows] = conditions
        self._position = (self._position + len(batch)) % self.fit_images
        self._filled = min(self._filled + len(batch), self.fit_images)

    def kept(self) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """The kept images (float in [0, 1]) and conditions, or None before any training batch."""
        if self._images is None or self._filled == 0:
            return None
        conditions = None if self._conditions is None else self._conditions[: self._filled]
        return self._images[: self._filled].float() / 255.0, conditions

    def fit(self, codes: torch.Tensor, seed: int = 0) -> None:
        self.density.fit(codes, seed)

    def sample(self, n: int, generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
        if not self.density.fitted:
            return torch.randn(n, self.latent_dim, generator=generator, device=device)
        return self.density.sample(n, generator, device)

    # The fitted density in the checkpoint: plain tensors, so weights_only loading reads it.
    def get_extra_state(self) -> dict[str, Any]:
        return self.density.get_extra_state()

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.density.set_extra_state(state)
