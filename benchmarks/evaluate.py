"""evaluate's feature extraction and formulas, measured against their baselines in the same run.

1. Feature extraction, images/s: evaluate's extractor loop against torchmetrics' FrechetInceptionDistance
   fed the same images directly (``update(images, real=True)``, the same network inside).
2. Real-feature cache: the first evaluation of a dataset split against the second (cache hit).
3. FID, KID and precision/recall against independent implementations on the same feature arrays:
   pytorch-fid's numpy/scipy FID (``scipy.linalg.sqrtm``), KID as a hand-written unbiased polynomial-
   kernel MMD over the same subsets, precision/recall by brute-force k-NN in numpy. Target: 1e-3 relative.

    python benchmarks/evaluate.py [--feature_extractor inception_fid_helper.pt] [--num 512] [--image_size 32]

Data: the built-in shapes (real = the validation split of one seed, "generated" = another seed's images,
blurred, so the sets differ). Without --feature_extractor a fixed random conv net stands in for Inception.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from scipy import linalg
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchvision.transforms.functional import gaussian_blur

from lightning_gen.data import ShapesDataModule
from lightning_gen.metrics import formulas
from lightning_gen.metrics.evaluation import real_features
from lightning_gen.metrics.extractors import build_extractor
from lightning_gen.metrics.feature_cache import FeatureCache


class RandomConvFeatures(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2), nn.ReLU(), nn.Conv2d(32, 64, 3, 2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.num_features = 64

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


def pytorch_fid_formula(real: np.ndarray, fake: np.ndarray, eps: float = 1e-6) -> float:
    """pytorch-fid's calculate_frechet_distance (numpy/scipy), on mean and covariance of the features."""
    mu1, mu2 = real.mean(0), fake.mean(0)
    sigma1, sigma2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def numpy_kid(real: np.ndarray, fake: np.ndarray, seed: int, subsets: int, subset_size: int) -> float:
    """Unbiased MMD² with k(x, y) = (x·y/d + 1)³, over the subsets torchmetrics draws (the same seeded permutations)."""
    torch.manual_seed(seed)
    values = []
    for _ in range(subsets):
        x = real[torch.randperm(len(real))[:subset_size].numpy()]
        y = fake[torch.randperm(len(fake))[:subset_size].numpy()]
        d, m = x.shape[1], subset_size
        k_xx, k_yy, k_xy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        values.append((k_xx.sum() - np.trace(k_xx)) / (m * (m - 1)) + (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1)) - 2 * k_xy.mean())
    return float(np.mean(values))


def brute_force_precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0))

    real_radii = np.sort(distances(real, real), axis=1)[:, k]
    fake_radii = np.sort(distances(fake, fake), axis=1)[:, k]
    precision = (distances(fake, real) <= real_radii[None]).any(1).mean()
    recall = (distances(real, fake) <= fake_radii[None]).any(1).mean()
    return float(precision), float(recall)


def images_of(seed: int, num: int, size: int) -> torch.Tensor:
    datamodule = ShapesDataModule(num_images=num * 10, image_size=size, seed=seed, val_fraction=0.1)
    datamodule.setup()
    return torch.cat([batch["image"] for batch in datamodule.val_dataloader()])[:num].float()


def timed(function, repeats: int = 1) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--feature_extractor", default=None, help="a TorchScript file (e.g. the fid-helper Inception adapter); default: a random conv net"
    )
    parser.add_argument("--num", type=int, default=512)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    if args.feature_extractor:
        extractor = build_extractor(args.feature_extractor)
    else:
        from lightning_gen.metrics.extractors import FeatureExtractor

        extractor = FeatureExtractor(RandomConvFeatures().eval(), "random-conv-64 (benchmark stand-in)", "random-conv-64")
    module = extractor.module
    real_images, fake_images = images_of(0, args.num, args.image_size), gaussian_blur(images_of(1, args.num, args.image_size), 3)
    print(
        f"data: built-in shapes {args.image_size}px, {args.num} real (seed 0 val) vs {args.num} other (seed 1 "
        f"val, blurred); extractor {extractor.name}"
    )
    print(f"torch threads: {torch.get_num_threads()} (machine shared with other jobs)")

    def ours() -> torch.Tensor:
        return extractor(real_images, args.batch_size)

    def torchmetrics_direct() -> FrechetInceptionDistance:
        metric = FrechetInceptionDistance(feature=module, sync_on_compute=False)
        with torch.no_grad():
            for start in range(0, len(real_images), args.batch_size):
                metric.update(real_images[start : start + args.batch_size], real=True)
        return metric

    ours_s, _ = timed(ours, args.repeats)
    theirs_s, _ = timed(torchmetrics_direct, args.repeats)
    print("\n| feature extraction | images/s | relative |\n|---|---|---|")
    print(f"| torchmetrics FID update() fed directly (baseline) | {args.num / theirs_s:.1f} | 1.00 |")
    print(f"| evaluate's extractor loop | {args.num / ours_s:.1f} | {theirs_s / ours_s:.2f} |")

    datamodule = ShapesDataModule(num_images=args.num * 10, image_size=args.image_size, seed=0, val_fraction=0.1)
    datamodule.setup()  # rendering the shapes is not part of an evaluation of a cached dataset
    with tempfile.TemporaryDirectory() as cache_dir:
        cache = FeatureCache(cache_dir)
        first_s, (real, first_hit) = timed(lambda: real_features(datamodule, "val", extractor, cache, args.batch_size))
        second_s, (again, second_hit) = timed(lambda: real_features(datamodule, "val", extractor, cache, args.batch_size))
    assert not first_hit and second_hit and torch.equal(real, again)
    print(f"\n| real features of shapes val ({len(real)} images) | seconds |\n|---|---|")
    print(f"| first evaluation (extract + write cache) | {first_s:.3f} |\n| second evaluation (cache hit) | {second_s:.4f} |")

    fake = extractor(fake_images, args.batch_size).float().double()
    real_np, fake_np = real.numpy(), fake.numpy()
    subset = min(formulas.KID_SUBSET_SIZE, len(real), len(fake))
    rows = [
        ("FID", formulas.fid(real, fake), pytorch_fid_formula(real_np, fake_np), "pytorch-fid numpy/scipy formula"),
        (
            "KID",
            formulas.kid(real, fake, seed=0)[0],
            numpy_kid(real_np, fake_np, 0, formulas.KID_SUBSETS, subset),
            "hand-written unbiased poly MMD², same subsets",
        ),
    ]
    precision, recall = formulas.precision_recall(real, fake)
    brute_precision, brute_recall = brute_force_precision_recall(real_np, fake_np)
    rows += [
        ("precision", precision, brute_precision, "brute-force k-NN (k=3)"),
        ("recall", recall, brute_recall, "brute-force k-NN (k=3)"),
    ]
    print("\n| metric | lightning_gen | independent | relative difference | independent implementation |\n|---|---|---|---|---|")
    worst = 0.0
    for name, ours_value, theirs_value, how in rows:
        relative = abs(ours_value - theirs_value) / max(abs(theirs_value), 1e-12)
        worst = max(worst, relative)
        print(f"| {name} | {ours_value:.6g} | {theirs_value:.6g} | {relative:.1e} | {how} |")
    print(f"\nworst relative difference {worst:.1e} (target < 1e-3): {'OK' if worst < 1e-3 else 'FAILED'}")


if __name__ == "__main__":
    main()
