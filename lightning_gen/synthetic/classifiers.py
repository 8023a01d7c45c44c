"""The classifiers ``downstream`` trains from scratch: the project's Judge CNN or torchvision's ResNet-18."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics.classification import MulticlassAccuracy
from torchvision.models import resnet18

from lightning_gen.facts import DataFacts
from lightning_gen.models.judge import Judge

ClassifierName = Literal["judge", "resnet18"]


def small_image_resnet18(num_classes: int, channels: int = 3) -> nn.Module:
    """ResNet-18 for 16–64 px images: a 3×3 stride-1 stem and no max-pool, as is usual for CIFAR-sized inputs
    (the ImageNet stem would shrink a 32 px image to 8 px before the first block)."""
    network = resnet18(weights=None, num_classes=num_classes)
    network.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    network.maxpool = nn.Identity()
    return network


def build_network(
    name: ClassifierName, class_names: Sequence[str], image_size: int, channels: int, judge_options: dict[str, Any] | None = None
) -> nn.Module:
    if name == "resnet18":
        return small_image_resnet18(len(class_names), channels)
    facts = DataFacts(image_size=image_size, channels=channels, class_names=tuple(class_names))
    return Judge(facts, targets="class", **(judge_options or {}))


class DownstreamClassifier(pl.LightningModule):
    """Cross-entropy training of ``network`` on (image, label) batches; ``test/accuracy`` is reduced over all
    ranks by torchmetrics (micro average: the fraction of test images classified right)."""

    def __init__(self, network: nn.Module, num_classes: int, lr: float = 2e-3, weight_decay: float = 0.0):
        super().__init__()
        self.network = network
        self.lr = lr
        self.weight_decay = weight_decay
        self.test_accuracy = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.network(images)
        return out["class"] if isinstance(out, dict) else out

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        loss = F.cross_entropy(self(images), labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(labels))
        return loss

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        self.test_accuracy.update(self(images), labels)
        self.log("test/accuracy", self.test_accuracy, batch_size=len(labels))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
