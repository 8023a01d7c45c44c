"""FID/KID/precision-recall of samples and reconstructions, and PSNR/SSIM distributions: what ``evaluate`` runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import save_image

from lightning_gen.errors import UserError
from lightning_gen.inference.sampling import options_of, sampling_kwargs
from lightning_gen.metrics import reconstruction
from lightning_gen.metrics.datamodules import reference_datamodule
from lightning_gen.metrics.evaluation import (
    DISTRIBUTION_METRICS,
    Score,
    distribution_scores,
    folder_features,
    real_features,
    reconstruct_split,
    sample_batched,
    split_name,
)
from lightning_gen.metrics.extractors import FeatureExtractor, build_extractor
from lightning_gen.metrics.feature_cache import FeatureCache
from lightning_gen.metrics.image_folders import describe_folder, first_image_size, load_folder
from lightning_gen.protocol import has_latents, is_conditional

DEFAULT_NUM = 2048


@dataclass
class QualityRequest:
    metrics: list[str]
    num: int
    seed: int
    batch_size: int
    split: str
    device: str
    extractor_spec: str
    inception_weights: str | None
    cache: FeatureCache
    save_images: Path | None
    png_dir: Path | None

    @classmethod
    def from_args(cls, args: Any, metrics: list[str], device: str, png_dir: Path | None) -> QualityRequest:
        return cls(
            metrics, args.num or DEFAULT_NUM, args.seed, args.batch_size, args.split, device, args.feature_extractor,
            args.inception_weights, FeatureCache(args.cache_dir), Path(args.save_images) if args.save_images else None, png_dir,
        )  # fmt: skip

    @property
    def distribution_metrics(self) -> set[str]:
        return set(self.metrics) & set(DISTRIBUTION_METRICS)

    def extractor(self) -> FeatureExtractor:
        return build_extractor(self.extractor_spec, self.inception_weights, self.device)


def announce(source: str, count: int, cached: bool) -> None:
    print(f"Real features of {source}: {count} images, {'read from the cache' if cached else 'extracted and cached'}")


def keep_images(images: torch.Tensor, folder: Path, first_index: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for offset, image in enumerate(images.cpu()):
        save_image(image, folder / f"{first_index + offset:06d}.png")


def condition_source(model: Any, num: int, prompt_template: str | None) -> Any:
    """Conditional models get conditions spread evenly over their vocabulary (text models: one prompt per class)."""
    if not is_conditional(model):
        return None
    from lightning_gen.metrics.judged import requested_conditions

    _, given = requested_conditions(model, num, prompt_template)
    return lambda start, count: given[start : start + count]


def sample_features(model: Any, request: QualityRequest, extractor: FeatureExtractor, args: Any) -> torch.Tensor:
    sampling = sampling_kwargs(model, options_of(args))
    condition_for = condition_source(model, request.num, args.get("prompt_template"))
    features, done = [], 0
    for images in sample_batched(model, request.num, request.seed, request.batch_size, condition_for, **sampling):
        if request.save_images is not None:
            keep_images(images, request.save_images, done)
        features.append(extractor(images, request.batch_size))
        done += len(images)
    return torch.cat(features)


def reconstruction_scores(
    model: Any, datamodule: Any, request: QualityRequest, data: str, extractor: FeatureExtractor | None, real: torch.Tensor | None
) -> tuple[list[Score], list[Path]]:
    psnr, ssim, features = [], [], []
    for originals, reconstructions in reconstruct_split(model, datamodule, request.split):
        psnr.append(reconstruction.per_image_psnr(originals, reconstructions).cpu())
        ssim.append(reconstruction.per_image_ssim(originals, reconstructions).cpu())
        if extractor is not None:
            features.append(extractor(reconstructions, request.batch_size))
    scores: list[Score] = []
    pngs: list[Path] = []
    for name, values in (("psnr", torch.cat(psnr)), ("ssim", torch.cat(ssim))):
        if name not in request.metrics:
            continue
        note = "per image over the whole split; psnr in dB" if name == "psnr" else "per image over the whole split"
        scores += [
            Score(f"{name}_{stat}", "reconstructions", value, data, generated=len(values), real=len(values), note=note)
            for stat, value in reconstruction.summarize(values).items()
        ]
        if request.png_dir is not None:
            title = f"{name.upper()} of {len(values)} reconstructions, {data}"
            pngs.append(reconstruction.histogram_png(values, request.png_dir / f"{name}_histogram.png", name.upper(), title))
    if extractor is not None and real is not None:
        scores += distribution_scores(
            real, torch.cat(features), request.distribution_metrics, "reconstructions", data, None, extractor.name
        )
    return scores, pngs


def check_image_size(model: Any, datamodule: Any) -> None:
    model_size = model.data_facts.image_size
    facts = getattr(datamodule, "facts", None)
    data_size = getattr(facts, "image_size", getattr(datamodule, "image_size", model_size))
    if data_size != model_size:
        raise UserError(
            f"the checkpoint makes {model_size}px images but the reference data serves {data_size}px; set "
            f"--data.init_args.image_size {model_size}."
        )


def evaluate_checkpoint(model: Any, request: QualityRequest, args: Any, run_directory: Path | None) -> tuple[list[Score], list[Path]]:
    datamodule = reference_datamodule(args, run_directory)
    check_image_size(model, datamodule)
    data = split_name(datamodule, request.split)
    scores: list[Score] = []
    extractor, real = None, None
    if request.distribution_metrics:
        extractor = request.extractor()
        real, cached = real_features(datamodule, request.split, extractor, request.cache, request.batch_size)
        announce(data, len(real), cached)
        fake = sample_features(model, request, extractor, args)
        scores += distribution_scores(real, fake, request.distribution_metrics, "samples", data, request.seed, extractor.name)
    pngs: list[Path] = []
    if has_latents(model) and ({"psnr", "ssim"} & set(request.metrics) or extractor is not None):
        recon_scores, pngs = reconstruction_scores(model, datamodule, request, data, extractor, real)
        scores += recon_scores
    elif {"psnr", "ssim"} & set(request.metrics):
        raise UserError(f"--metrics psnr/ssim score reconstructions, and {type(model).__name__} has no encoder; drop psnr,ssim.")
    return scores, pngs


def evaluate_folder(request: QualityRequest, args: Any) -> list[Score]:
    if not request.distribution_metrics:
        raise UserError("folder mode scores distributions; use --metrics fid,kid,pr (psnr/ssim/judge need a checkpoint).")
    extractor = request.extractor()
    if args.reference is not None:
        size = args.image_size or first_image_size(args.reference)
        description, data = describe_folder(args.reference, size), f"folder {args.reference}"
        real, cached = folder_features(load_folder(args.reference, size), description, extractor, request.cache)
    else:
        datamodule = reference_datamodule(args, None)
        size = args.image_size or datamodule.image_size
        data = split_name(datamodule, request.split)
        real, cached = real_features(datamodule, request.split, extractor, request.cache, request.batch_size)
    announce(data, len(real), cached)
    fake = extractor(load_folder(args.images, size), request.batch_size, progress=f"features of the images in {args.images}")
    return distribution_scores(real, fake, request.distribution_metrics, f"images in {args.images}", data, None, extractor.name)
