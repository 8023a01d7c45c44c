"""Feature extractors for FID/KID/precision-recall, named in every result (numbers from different ones never compare).

``--feature_extractor`` takes:
- ``inception`` (default): torchmetrics' FID Inception-v3 (torch-fidelity's port), weights from
  ``--inception_weights PATH`` or the torch hub cache; never a silent download that hangs offline;
- a TorchScript (``torch.jit.save``) or ``torch.export`` (``.pt2``) file whose forward takes N×3×H×W
  float images in [0, 1] at the data's size and returns N×D features (it resizes/normalises itself);
- a lightning_gen Judge checkpoint (``.ckpt``): its trunk's hidden layer, for data Inception never saw;
- a class path (``package.module.Class``) of an ``nn.Module`` built without arguments.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pickle
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lightning_gen.compat import fid_inception_class
from lightning_gen.console.progress import track
from lightning_gen.errors import UserError
from lightning_gen.protocol import has_features

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
DOWNLOAD_TIMEOUT_S = 15.0


@dataclass
class FeatureExtractor:
    module: nn.Module
    name: str  # printed beside every number
    identity: str  # name + content hash: part of the real-feature cache key

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 256, progress: str | None = None) -> torch.Tensor:
        """N×C×H×W images in [0, 1] (any device) → N×D float64 features on the CPU; ``progress`` names the work
        in progress lines (none when None)."""
        device = next(self.module.parameters(), torch.empty(0)).device
        features = []
        starts = range(0, len(images), batch_size)
        if progress is not None:
            starts = track(
                starts,
                f"{progress} of {len(images)} images ({self.name})",
                len(images),
                "img",
                count=lambda start: min(batch_size, len(images) - start),
            )
        for start in starts:
            batch = images[start : start + batch_size].to(device, torch.float32)
            if batch.shape[1] == 1:
                batch = batch.expand(-1, 3, -1, -1)
            features.append(self.module(batch.clamp(0, 1)).flatten(1).double().cpu())
        return torch.cat(features)

    def to(self, device: str | torch.device) -> FeatureExtractor:
        self.module.to(device)
        return self


class ModelFeatures(nn.Module):
    """A checkpoint's model (``protocol.HasFeatures``, e.g. the Judge's trunk) as a feature-extractor module."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.features(images)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def state_digest(module: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:12]


class InceptionFeatures(nn.Module):
    """[0, 1] float images at any size → the 2048 pool features of the FID Inception (it resizes to 299 itself)."""

    def __init__(self, weights: Path):
        super().__init__()
        readable_as_weights_only(weights)  # torch-fidelity reads the file with weights_only=False
        try:
            NoTrainInceptionV3 = fid_inception_class()
        except ImportError as error:  # pragma: no cover - torchmetrics always ships it
            raise UserError(f"torchmetrics' FID Inception is unavailable ({error}); pip install torch-fidelity.") from error
        try:
            self.inception = NoTrainInceptionV3(
                name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(weights)
            )
        except ModuleNotFoundError as error:
            raise UserError(
                "the Inception feature extractor needs torch-fidelity; pip install torch-fidelity, or pass --feature_extractor FILE."
            ) from error

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.inception((images * 255).round().to(torch.uint8))


def readable_as_weights_only(path: Path) -> None:
    """Refuses (one sentence) a weights file whose pickle holds more than plain data, before a library unpickles it fully.

    torch-fidelity loads the Inception weights with ``torch.load(weights_only=False)``; a file the weights-only
    unpickler accepts references only tensors and plain containers, so that load cannot run code either.
    """
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UserError(
            f"the Inception weights {path} hold pickled objects that are not plain data, which lightning_gen does not load "
            f"because unpickling them could run code; download {INCEPTION_URL} again and pass it with --inception_weights."
        ) from error
    except Exception as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(".")
        raise UserError(
            f"could not read the Inception weights {path} ({first}); download {INCEPTION_URL} again and pass it with --inception_weights."
        ) from error


def hub_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def _download(url: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,
        tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as out,
    ):
        shutil.copyfileobj(response, out)
    os.replace(out.name, target)


def inception_weights(given: str | None) -> Path:
    """The weights file: ``given``, else the hub cache, else one download attempt with a short timeout."""
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise UserError(f"--inception_weights {path} is not a file; download {INCEPTION_URL} and pass its path.")
        return path
    cached = hub_weights_path()
    if cached.is_file():
        return cached
    if os.environ.get("LIGHTNING_GEN_OFFLINE") != "1":
        try:
            _download(INCEPTION_URL, cached)
            return cached
        except (OSError, ValueError):  # URLError, timeouts, refused connections are OSErrors
            pass
    raise UserError(
        f"the FID Inception weights {INCEPTION_FILE} are not in the torch hub cache and could not be downloaded; "
        f"download {INCEPTION_URL} on a machine with internet and put it at {cached} (or pass --inception_weights PATH), "
        f"or score with --feature_extractor FILE.pt."
    )


def _load_file(path: Path) -> tuple[nn.Module, str]:
    if path.suffix == ".ckpt":
        from lightning_gen.checkpoints.loading import load_model

        model = load_model(path)
        if not has_features(model):
            raise UserError(
                f"--feature_extractor {path} is a {type(model).__name__} checkpoint; pass a Judge checkpoint, "
                f"a TorchScript file or 'inception'."
            )
        return ModelFeatures(model), f"judge-trunk:{path.name}"
    if path.suffix == ".pt2":
        return torch.export.load(str(path)).module(), f"export:{path.name}"
    try:
        return torch.jit.load(str(path), map_location="cpu"), f"torchscript:{path.name}"
    except RuntimeError as error:
        raise UserError(
            f"--feature_extractor {path} is not a TorchScript file ({str(error).splitlines()[0]}); save it "
            f"with torch.jit.save, or a torch.export .pt2."
        ) from error


def _load_class(class_path: str) -> nn.Module:
    module_name, _, attribute = class_path.rpartition(".")
    try:
        built = getattr(importlib.import_module(module_name), attribute)()
    except (ImportError, AttributeError, ValueError, TypeError) as error:
        raise UserError(
            f"--feature_extractor {class_path} is neither 'inception', a file nor an importable nn.Module "
            f"class built without arguments ({error})."
        ) from error
    if not isinstance(built, nn.Module):
        raise UserError(f"--feature_extractor {class_path} built a {type(built).__name__}, not an nn.Module.")
    return built


def build_extractor(
    spec: str | None = None, inception_weights_file: str | None = None, device: str | torch.device = "cpu"
) -> FeatureExtractor:
    spec = spec or "inception"
    if spec == "inception":
        weights = inception_weights(inception_weights_file)
        module, name, identity = (
            InceptionFeatures(weights),
            "inception-v3-fid (torchmetrics, 2048 pool features)",
            f"inception:{file_digest(weights)}",
        )
    elif Path(spec).expanduser().is_file():
        path = Path(spec).expanduser()
        module, name = _load_file(path)
        identity = f"{name}:{file_digest(path)}"
    elif "/" in spec or spec.endswith((".pt", ".pt2", ".ckpt", ".pth")):
        raise UserError(
            f"--feature_extractor {spec} does not exist; pass an existing TorchScript/.pt2/Judge .ckpt file, a class path or 'inception'."
        )
    else:
        module, name = _load_class(spec), f"class:{spec}"
        identity = f"{name}:{state_digest(module)}"
    try:
        module.eval()
    except NotImplementedError:  # a torch.export program keeps the mode it was exported in
        pass
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return FeatureExtractor(module, name, identity).to(device)
