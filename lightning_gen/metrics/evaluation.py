"""The evaluation pipeline: real features (cached), generated features, and scores that name their data.

Every number is a ``Score`` carrying what it was measured on (data, split, sample counts, seed,
extractor), so a table or JSON row read on its own is never ambiguous.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch

from lightning_gen.console.progress import track
from lightning_gen.metrics import formulas
from lightning_gen.metrics.extractors import FeatureExtractor
from lightning_gen.metrics.feature_cache import FeatureCache, describe_datamodule
from lightning_gen.protocol import batch_condition

DISTRIBUTION_METRICS = ("fid", "kid", "pr")
BIASED_FID_NOTE = f"FID is biased upwards below {formulas.FID_UNBIASED_FROM} samples; compare only at equal sample counts"


@dataclass
class Score:
    metric: str
    subject: str  # what was scored: samples, reconstructions, images
    value: float
    data: str
    generated: int
    real: int | None = None
    seed: int | None = None
    extractor: str | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def key(self) -> str:
        return f"{self.metric}/{self.subject}"


def split_batches(datamodule: Any, split: str) -> Iterator[dict[str, Any]]:
    datamodule.setup("test" if split == "test" else "validate")
    loader = datamodule.test_dataloader() if split == "test" else datamodule.val_dataloader()
    yield from loader


def split_size(datamodule: Any, split: str) -> int | None:
    """Images in the split ``split_batches`` serves (None when the datamodule does not say)."""
    datamodule.setup("test" if split == "test" else "validate")
    dataset = getattr(datamodule, "test_set", None) if split == "test" else None
    dataset = dataset if dataset is not None else getattr(datamodule, "val_set", None)
    try:
        return len(dataset) if dataset is not None else None
    except TypeError:
        return None


def split_name(datamodule: Any, split: str) -> str:
    """``test`` falls back to the validation split when the dataset has no test split: say so. The datamodule is
    set up first: before that no split exists, and a dataset with a test split was named "val (no test split)"."""
    datamodule.setup("test" if split == "test" else "validate")
    if split == "test" and getattr(datamodule, "test_set", None) is None:
        return f"{type(datamodule).__name__} val (no test split)"
    return f"{type(datamodule).__name__} {split}"


def real_features(
    datamodule: Any, split: str, extractor: FeatureExtractor, cache: FeatureCache, batch_size: int = 256
) -> tuple[torch.Tensor, bool]:
    """All real images of the split through the extractor, or their cached features: (features, cache hit)."""
    description = {"data": describe_datamodule(datamodule), "split": split, "extractor": extractor.identity}

    def compute() -> torch.Tensor:
        batches = track(
            split_batches(datamodule, split),
            f"real features of {split_name(datamodule, split)}",
            split_size(datamodule, split),
            "img",
            count=lambda batch: len(batch["image"]),
        )
        return torch.cat([extractor(batch["image"], batch_size) for batch in batches])

    return cache.get_or_compute(description, compute)


def folder_features(
    images: torch.Tensor, description: dict[str, Any], extractor: FeatureExtractor, cache: FeatureCache
) -> tuple[torch.Tensor, bool]:
    return cache.get_or_compute({"data": description, "extractor": extractor.identity}, lambda: extractor(images, progress="real features"))


@torch.no_grad()
def sample_batched(model: Any, num: int, seed: int, batch_size: int, condition_for: Callable[[int, int], Any] | None = None,
                   progress: bool = True, **sampling: Any) -> Iterator[torch.Tensor]:  # fmt: skip
    """``num`` samples in batches from one seeded generator: the same seed gives the same images at any batch size
    only for models whose noise is drawn per image in order; the seed always gives the same images at one batch size."""
    generator = torch.Generator(device=model.device).manual_seed(seed)
    for start in track(
        range(0, num, batch_size), f"sampling {num} images", num, "img", count=lambda start: min(batch_size, num - start), enabled=progress
    ):
        count = min(batch_size, num - start)
        condition = condition_for(start, count) if condition_for is not None else None
        yield model.sample(count, condition=condition, generator=generator, **sampling).float().clamp(0, 1)


@torch.no_grad()
def reconstruct_split(model: Any, datamodule: Any, split: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(originals, reconstructions) batch by batch over the whole split, with the batch's condition where the model takes one."""
    for batch in track(
        split_batches(datamodule, split),
        f"reconstructing {split_name(datamodule, split)}",
        split_size(datamodule, split),
        "img",
        count=lambda batch: len(batch["image"]),
    ):
        batch = {key: value.to(model.device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}
        originals = batch["image"].float()
        yield originals, model.reconstruct(originals, batch_condition(model, batch)).float().clamp(0, 1)


def distribution_scores(
    real: torch.Tensor, fake: torch.Tensor, metrics: set[str], subject: str, data: str, seed: int | None, extractor: str
) -> list[Score]:
    common = {"subject": subject, "data": data, "generated": len(fake), "real": len(real), "seed": seed, "extractor": extractor}
    scores: list[Score] = []
    if "fid" in metrics:
        small = min(len(real), len(fake)) < formulas.FID_UNBIASED_FROM
        scores.append(Score("fid", value=formulas.fid(real, fake), note=BIASED_FID_NOTE if small else "", **common))
    if "kid" in metrics:
        mean, std, subset = formulas.kid(real, fake, seed=seed or 0)
        note = f"unbiased MMD², {formulas.KID_SUBSETS} subsets of {subset}"
        scores += [Score("kid", value=mean, note=note, **common), Score("kid_std", value=std, note=note, **common)]
    if "pr" in metrics:
        precision, recall = formulas.precision_recall(real, fake)
        note = f"k-NN manifolds, k={formulas.PR_NEIGHBOURS}"
        scores += [Score("precision", value=precision, note=note, **common), Score("recall", value=recall, note=note, **common)]
    return scores
