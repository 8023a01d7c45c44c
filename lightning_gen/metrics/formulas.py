"""FID, KID and precision/recall on feature arrays (N×D), so every extractor shares one implementation.

The arrays are complete where these run (gathered first under DDP), so the metrics never sync across
processes: ``sync_on_compute=False`` (a sync from rank 0 alone would wait forever for the other ranks).

FID and KID are torchmetrics' metrics fed the features through an identity "extractor"; precision and
recall (Kynkäänniemi et al. 2019) are written here because neither torchmetrics nor torch-fidelity
computes them from given features.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

FID_UNBIASED_FROM = 2048  # below this many samples FID is biased upwards (Chong & Forsyth 2020)
KID_SUBSET_SIZE = 1000
KID_SUBSETS = 100
PR_NEIGHBOURS = 3


class GivenFeatures(nn.Module):
    """Lets torchmetrics' FID/KID take features instead of images: ``update(features, real=...)``."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    metric = FrechetInceptionDistance(feature=GivenFeatures(real.shape[1]), sync_on_compute=False)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


def kid(
    real: torch.Tensor, fake: torch.Tensor, seed: int = 0, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE
) -> tuple[float, float, int]:
    """Unbiased KID (polynomial kernel MMD²) averaged over random subsets: (mean, std, subset size used)."""
    size = min(subset_size, len(real), len(fake))
    with warnings.catch_warnings():  # "will save all extracted features": these are the features, already in memory
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=GivenFeatures(real.shape[1]), subsets=subsets, subset_size=size, sync_on_compute=False)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):  # the subsets come from the global RNG; seed them, leave it as it was
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std), size


def _kth_neighbour_radii(features: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    radii = []
    for start in range(0, len(features), chunk):
        distances = torch.cdist(features[start : start + chunk], features)
        # The k+1-th smallest distance: the nearest one is the point itself.
        radii.append(distances.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def _inside_manifold(points: torch.Tensor, manifold: torch.Tensor, radii: torch.Tensor, chunk: int) -> torch.Tensor:
    inside = []
    for start in range(0, len(points), chunk):
        distances = torch.cdist(points[start : start + chunk], manifold)
        inside.append((distances <= radii[None]).any(dim=1))
    return torch.cat(inside)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = PR_NEIGHBOURS, chunk: int = 1024) -> tuple[float, float]:
    """Precision: share of fake samples inside the real k-NN manifold; recall: share of real ones inside the fake manifold."""
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set, got {len(real)} and {len(fake)}")
    real, fake = real.double(), fake.double()
    real_radii, fake_radii = _kth_neighbour_radii(real, k, chunk), _kth_neighbour_radii(fake, k, chunk)
    precision = _inside_manifold(fake, real, real_radii, chunk).double().mean()
    recall = _inside_manifold(real, fake, fake_radii, chunk).double().mean()
    return float(precision), float(recall)
