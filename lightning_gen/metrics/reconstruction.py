"""Per-image PSNR and SSIM of reconstructions over a whole split: distributions, not one mean (seed 001's histogram)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

PERCENTILES = (5, 25, 50, 75, 95)


def per_image_psnr(originals: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    return peak_signal_noise_ratio(reconstructions.float(), originals.float(), data_range=1.0, reduction="none", dim=(1, 2, 3))


def per_image_ssim(originals: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    # The Gaussian window must fit inside tiny test images.
    kernel = min(11, originals.shape[-1] - (1 - originals.shape[-1] % 2))
    return structural_similarity_index_measure(
        reconstructions.float(), originals.float(), data_range=1.0, reduction="none", kernel_size=kernel
    )


def summarize(values: torch.Tensor) -> dict[str, float]:
    array = values.double().cpu().numpy()
    summary = {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0}
    summary.update({f"p{q}": float(value) for q, value in zip(PERCENTILES, np.percentile(array, PERCENTILES))})
    summary.update({"min": float(array.min()), "max": float(array.max())})
    return summary


def histogram_png(values: torch.Tensor, path: Path, metric: str, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    array = values.double().cpu().numpy()
    figure, axes = pyplot.subplots(figsize=(5, 3.2), dpi=120)
    axes.hist(array, bins=min(50, max(10, len(array) // 20)), color="#4c72b0")
    axes.axvline(array.mean(), color="black", linestyle="--", linewidth=1, label=f"mean {array.mean():.3g}")
    axes.set_xlabel(metric)
    axes.set_ylabel("images")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    pyplot.close(figure)
    return path
