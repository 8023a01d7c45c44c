"""Feature extractors for tests: a small fixed random network instead of Inception, and one that counts its images."""

from __future__ import annotations

import torch
from torch import nn


class TinyFeatures(nn.Module):
    """A small fixed random network (a stand-in for Inception that tests may use): N×3×H×W in [0, 1] → N×12."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 12, 3, stride=2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator))
            self.conv.bias.zero_()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(images)).mean(dim=(2, 3))


class CountingFeatures(TinyFeatures):
    images_seen = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        CountingFeatures.images_seen += len(images)
        return super().forward(images)
