"""The ex-post Gaussian mixture prior: EM, sampling, the checkpoint round trip and its use by ``sample``."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import TINY_CONFIG, run_cli
from PIL import Image

from lightning_gen.checkpoints.loading import load_model
from lightning_gen.data import ShapesDataModule
from lightning_gen.models.latent_prior import GaussianMixture, LatentPrior, fit_gaussian_mixture, weighted_scatter

WEIGHTS = torch.tensor([0.3, 0.7], dtype=torch.float64)
MEANS = torch.tensor([[-4.0, 1.0], [3.0, -2.0]], dtype=torch.float64)
COVARIANCES = torch.tensor([[[1.0, 0.6], [0.6, 0.5]], [[0.3, -0.1], [-0.1, 2.0]]], dtype=torch.float64)


def known_mixture() -> GaussianMixture:
    return GaussianMixture(WEIGHTS, MEANS, torch.linalg.cholesky(COVARIANCES))


def test_moments_by_hand():
    mean, covariance = known_mixture().moments()
    assert torch.allclose(mean, torch.tensor([0.9, -1.1], dtype=torch.float64))
    # Σ w_k (Σ_k + μ_k μ_kᵀ) − mean meanᵀ, worked out on paper for these numbers.
    expected = torch.tensor(
        [[0.3 * 17 + 0.7 * 9.3, 0.3 * -3.4 + 0.7 * -6.1], [0.3 * -3.4 + 0.7 * -6.1, 0.3 * 1.5 + 0.7 * 6.0]], dtype=torch.float64
    )
    expected -= mean[:, None] * mean[None, :]
    assert torch.allclose(covariance, expected)


def test_samples_reproduce_the_mixture_moments():
    mixture = known_mixture()
    generator = torch.Generator().manual_seed(0)
    samples = mixture.sample(200_000, generator)
    mean, covariance = mixture.moments()
    assert torch.allclose(samples.mean(0), mean, atol=0.03)
    assert torch.allclose(torch.cov(samples.T), covariance, atol=0.08)
    # Each half of the plane holds its component's share.
    assert abs((samples[:, 0] < -0.5).double().mean().item() - 0.3) < 0.01


def test_component_log_densities_equal_torch_distributions():
    """log w_k + log N(x | μ_k, Σ_k) against torch.distributions' MultivariateNormal (an independent implementation)."""
    mixture = known_mixture()
    points = torch.tensor([[0.0, 0.0], [-4.0, 1.0], [3.5, -1.0], [10.0, 5.0]], dtype=torch.float64)
    expected = torch.stack(
        [
            weight.log() + torch.distributions.MultivariateNormal(mean, covariance).log_prob(points)
            for weight, mean, covariance in zip(WEIGHTS, MEANS, COVARIANCES)
        ],
        1,
    )
    assert torch.allclose(mixture.log_prob_components(points), expected, rtol=1e-10, atol=1e-10)


def test_weighted_scatter_by_hand():
    """Σ_n r_nk (x_n − μ_k)(x_n − μ_k)ᵀ, summed point by point."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(7, 3, generator=generator, dtype=torch.float64)
    means = torch.randn(2, 3, generator=generator, dtype=torch.float64)
    responsibility = torch.rand(7, 2, generator=generator, dtype=torch.float64)
    expected = torch.zeros(2, 3, 3, dtype=torch.float64)
    for n in range(7):
        for k in range(2):
            diff = x[n] - means[k]
            expected[k] += responsibility[n, k] * torch.outer(diff, diff)
    assert torch.allclose(weighted_scatter(x, means, responsibility), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_em_recovers_two_separated_components(covariance):
    data = known_mixture().sample(6000, torch.Generator().manual_seed(1))
    fitted = fit_gaussian_mixture(data, components=2, covariance=covariance, seed=0)
    order = fitted.means[:, 0].argsort()
    assert torch.allclose(fitted.weights[order], WEIGHTS, atol=0.02)
    assert torch.allclose(fitted.means[order], MEANS, atol=0.1)
    if covariance == "full":
        assert torch.allclose(fitted.covariances[order], COVARIANCES, atol=0.1)
    else:
        assert torch.allclose(fitted.covariances[order], torch.diag_embed(COVARIANCES.diagonal(dim1=1, dim2=2)), atol=0.1)


def test_ring_keeps_the_most_recent_images():
    prior = LatentPrior(latent_dim=2, fit_images=5)
    for value in range(4):  # 4 batches of 2: images 0…7, the ring keeps 3…7
        images = torch.tensor([2 * value, 2 * value + 1]).float().view(2, 1, 1, 1) / 10
        prior.observe(images, torch.tensor([2 * value, 2 * value + 1]))
    images, conditions = prior.kept()
    assert sorted(conditions.long().tolist()) == [3, 4, 5, 6, 7]
    assert sorted((images.flatten() * 10).round().long().tolist()) == [3, 4, 5, 6, 7]


@pytest.fixture(scope="module")
def gmm_checkpoint(tmp_path_factory, one_torch_thread) -> Path:
    folder = tmp_path_factory.mktemp("gmm")
    config = copy.deepcopy(TINY_CONFIG)
    config["model"]["init_args"].update({"prior": "gmm", "gmm_components": 3, "prior_fit_images": 64})
    config["trainer"]["default_root_dir"] = str(folder / "runs")
    config["ema"] = {"decay": 0.9}
    path = folder / "gmm.yaml"
    path.write_text(yaml.safe_dump(config))
    run_cli("fit", "--config", path)
    return next((folder / "runs").rglob("last.ckpt"))


def test_checkpoint_holds_the_mixture_as_plain_tensors(gmm_checkpoint):
    checkpoint = torch.load(gmm_checkpoint, map_location="cpu", weights_only=True)
    state = checkpoint["state_dict"]["latent_prior._extra_state"]
    assert state["fitted"] and state["means"].shape == (3, 8) and state["scale_tril"].shape == (3, 8, 8)
    assert torch.isclose(state["weights"].sum(), torch.tensor(1.0, dtype=state["weights"].dtype))
    model = load_model(gmm_checkpoint)
    assert torch.equal(model.latent_prior.mixture.means, state["means"])
    # The mixture was fitted on the codes the saved (EMA) encoder gives to (augmented) training images: its mean
    # is near the mean of the training images' codes (far from N(0, I)'s 0: their mean's norm is about 1.8).
    data = ShapesDataModule(**TINY_CONFIG["data"]["init_args"])
    data.setup()
    images = data.train_set.__getitems__(list(range(len(data.train_set))))["image"]
    with torch.no_grad():
        codes = model.encode(images).double()
    mixture_mean, _ = model.latent_prior.mixture.moments()
    assert codes.mean(0).norm() > 0.5
    torch.testing.assert_close(mixture_mean, codes.mean(0), atol=0.05, rtol=0)


def test_sample_draws_from_the_stored_mixture(gmm_checkpoint):
    model = load_model(gmm_checkpoint)
    mixture = model.latent_prior.mixture
    expected = model.decode(mixture.sample(6, torch.Generator().manual_seed(3)).float())
    assert torch.allclose(model.sample(6, generator=torch.Generator().manual_seed(3)), expected)
    standard = model.decode(torch.randn(6, 8, generator=torch.Generator().manual_seed(3)))
    assert torch.allclose(model.sample(6, generator=torch.Generator().manual_seed(3), prior="standard"), standard)
    assert not torch.allclose(expected, standard)


def test_sample_command_switches_between_the_priors(gmm_checkpoint, tmp_path):
    model = load_model(gmm_checkpoint)
    generator = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    expected = {"fitted": model.sample(4, generator=generator()), "standard": model.sample(4, generator=generator(), prior="standard")}
    for prior, images in expected.items():
        out = tmp_path / f"{prior}.png"
        run_cli(
            "sample", "--ckpt_path", gmm_checkpoint, "--num", 4, "--nrow", 4, "--seed", 5, "--prior", prior, "--device", "cpu", "--out", out
        )
        shown = torch.from_numpy(np.asarray(Image.open(out).convert("RGB"))).permute(2, 0, 1).float() / 255
        side = images.shape[-1]
        tiles = torch.stack([shown[:, 1 : 1 + side, 1 + i * (side + 1) : 1 + i * (side + 1) + side] for i in range(4)])
        assert (tiles - images.float()).abs().max() <= 1 / 255 + 1e-6, prior
