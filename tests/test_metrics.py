"""FID, KID and precision/recall on feature arrays, against closed forms and hand-computed values."""

from __future__ import annotations

import pytest
import torch

from lightning_gen.metrics import formulas


def gaussian_frechet(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """Closed form ||mu1 - mu2||² + Tr(S1 + S2 - 2 (S1^½ S2 S1^½)^½), with symmetric square roots from eigh."""

    def sqrtm(matrix: torch.Tensor) -> torch.Tensor:
        values, vectors = torch.linalg.eigh(matrix)
        return vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T

    root1 = sqrtm(cov1)
    return float((mu1 - mu2).square().sum() + cov1.trace() + cov2.trace() - 2 * sqrtm(root1 @ cov2 @ root1).trace())


def draws(n: int, mean: torch.Tensor, cov: torch.Tensor, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return mean + torch.randn(n, len(mean), generator=generator, dtype=torch.float64) @ torch.linalg.cholesky(cov).T


def test_fid_of_a_set_with_itself_is_zero_and_a_shift_adds_its_squared_length():
    features = draws(500, torch.zeros(6, dtype=torch.float64), torch.eye(6, dtype=torch.float64), seed=0)
    assert abs(formulas.fid(features, features)) < 1e-6
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0, 0.0, 3.0], dtype=torch.float64)
    # The same covariance, the mean moved: FID = ||shift||² = 14.25 exactly.
    assert formulas.fid(features, features + shift) == pytest.approx(14.25, rel=1e-6)
    assert formulas.fid(features, features + 2 * shift) == pytest.approx(4 * 14.25, rel=1e-6)


def test_fid_of_two_gaussians_approaches_the_closed_form():
    mean1, mean2 = torch.zeros(3, dtype=torch.float64), torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
    cov1 = torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.5]], dtype=torch.float64)
    cov2 = torch.tensor([[1.0, 0.0, 0.3], [0.0, 3.0, 0.0], [0.3, 0.0, 1.0]], dtype=torch.float64)
    expected = gaussian_frechet(mean1, cov1, mean2, cov2)
    measured = formulas.fid(draws(40_000, mean1, cov1, 1), draws(40_000, mean2, cov2, 2))
    assert measured == pytest.approx(expected, rel=0.03)


def unbiased_poly_mmd(x: torch.Tensor, y: torch.Tensor) -> float:
    """Hand-written unbiased MMD² with KID's kernel (x·y/d + 1)³: diagonals left out of the within-set means."""
    d = x.shape[1]
    k_xx, k_yy, k_xy = (((a @ b.T) / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    m, n = len(x), len(y)
    return float((k_xx.sum() - k_xx.trace()) / (m * (m - 1)) + (k_yy.sum() - k_yy.trace()) / (n * (n - 1)) - 2 * k_xy.mean())


def test_kid_is_unbiased_mmd_and_averages_zero_for_one_distribution():
    mean, cov = torch.zeros(8, dtype=torch.float64), torch.eye(8, dtype=torch.float64)
    x, y = draws(300, mean, cov, 3), draws(300, mean, cov, 4)
    # One subset holding every sample is the full-set unbiased estimate.
    value, _, size = formulas.kid(x, y, subsets=1, subset_size=300)
    assert size == 300 and value == pytest.approx(unbiased_poly_mmd(x, y), rel=1e-9)
    # Unbiased: over many independent pairs of draws from one distribution the mean is ~0 (a biased MMD² would be > 0).
    values = [formulas.kid(draws(100, mean, cov, 10 + i), draws(100, mean, cov, 100 + i), subsets=5)[0] for i in range(20)]
    spread = torch.tensor(values).std().item()
    assert abs(sum(values) / len(values)) < 3 * spread / len(values) ** 0.5
    assert formulas.kid(x, y + 1.0)[0] > 10 * spread


def test_precision_recall_of_identical_disjoint_and_hand_computed_sets():
    features = draws(200, torch.zeros(5, dtype=torch.float64), torch.eye(5, dtype=torch.float64), seed=5)
    assert formulas.precision_recall(features, features) == (1.0, 1.0)
    assert formulas.precision_recall(features, features + 100.0) == (0.0, 0.0)
    # 1-D, k = 1. Real radii: 1, 1, 1, 1, 7; fake radii: .3, .3, 3.5, 3.5.
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]])
    fake = torch.tensor([[2.2], [2.5], [16.5], [20.0]])
    precision, recall = formulas.precision_recall(real, fake, k=1)
    assert precision == pytest.approx(3 / 4)  # 2.2 and 2.5 near 2; 16.5 within 7 of 10; 20 not
    assert recall == pytest.approx(1 / 5)  # only 2 lies inside a fake ball (2.2 ± .3)
