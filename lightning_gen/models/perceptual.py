"""An LPIPS-style perceptual distance on frozen torchvision VGG16 features, from a local weights file (offline)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import vgg16

from lightning_gen.errors import UserError

# The ReLU outputs LPIPS compares (relu1_2, relu2_2, relu3_3): indices into vgg16().features.
VGG_LAYERS = (3, 8, 15)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGPerceptual(nn.Module):
    """Per image: Σ over layers of the spatial mean of ‖f̂(a) − f̂(b)‖², f̂ = VGG16 features unit-normalised over
    channels (LPIPS, Zhang et al. 2018, without its learned per-channel weights). Images in [0, 1].

    ``weights``: a torchvision ``vgg16`` state_dict file (``torch.save(vgg16(weights=...).state_dict(), PATH)``);
    no download is attempted.
    """

    def __init__(self, weights: str | Path):
        super().__init__()
        path = Path(weights)
        if not path.is_file():
            raise UserError(
                f"model.init_args.perceptual_weights '{path}' is not a file; point it at a torchvision vgg16 state_dict "
                "(.pth) or set it to null."
            )
        network = vgg16(weights=None)
        try:
            network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (RuntimeError, KeyError, ValueError) as error:
            raise UserError(
                f"model.init_args.perceptual_weights '{path}' is not a torchvision vgg16 state_dict ({str(error).splitlines()[0]}); "
                "save one with torch.save(vgg16(weights=...).state_dict(), PATH)."
            ) from None
        self.features = network.features[: VGG_LAYERS[-1] + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGPerceptual:
        super().train(mode)
        self.features.eval()  # frozen: never in training mode
        return self

    def _layers(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images.float() - self.mean) / self.std
        outputs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in VGG_LAYERS:
                outputs.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return outputs

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape[1] == 1:  # grey images: VGG wants three channels
            a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
        return sum((fa - fb).pow(2).sum(1).mean((1, 2)) for fa, fb in zip(self._layers(a), self._layers(b)))
