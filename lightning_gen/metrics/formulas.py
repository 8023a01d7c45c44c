"""FID, KID and precision/recall on feature arrays (N×D), so every extractor shares one implementation.

The arrays are complete where these run (gathered first under DDP), so the metrics never sync across
processes: ``sync_on_compute=False`` (a sync from rank 0 alone would wait forever for the other ranks).

FID and KID are torchmetrics' metrics fed the features through an identity "extractor"; precision and
recall (Kynkäänniemi et al. 2019) are torch-fidelity's ``prc_features_to_metric``, which takes the features.
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


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = PR_NEIGHBOURS, chunk: int = 1024) -> tuple[float, float]:
    """Precision: share of fake samples inside the real k-NN manifold; recall: share of real ones inside the fake manifold.

    torch-fidelity's implementation, in ``chunk``-row blocks (``save_cpu_ram``: never an N×N distance matrix).
    """
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set, got {len(real)} and {len(fake)}")
    from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric

    # torch-fidelity's convention: features_1 are the generated samples, features_2 the real ones.
    metric = prc_features_to_metric(
        fake.double(), real.double(), prc_neighborhood=k, prc_batch_size=chunk, save_cpu_ram=True, verbose=False
    )
    return float(metric[KEY_METRIC_PRECISION]), float(metric[KEY_METRIC_RECALL])
