"""Convolutional encoder and decoder stacks built from a list of channels (kernel 4, stride 2, as in the seeds)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from lightning_gen.errors import UserError

Activation = Literal["relu", "leaky_relu", "silu"]
Upsampling = Literal["transpose", "upsample"]


def make_activation(name: Activation) -> nn.Module:
    return {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "silu": nn.SiLU}[name]()


def _block(conv: nn.Module, channels: int, batchnorm: bool, dropout: float, activation: Activation) -> list[nn.Module]:
    layers = [conv]
    if batchnorm:
        layers.append(nn.BatchNorm2d(channels))
    layers.append(make_activation(activation))
    if dropout > 0:
        layers.append(nn.Dropout2d(dropout))
    return layers


def check_divisible(image_size: int, levels: int) -> None:
    if image_size % (2**levels) != 0:
        raise UserError(
            f"model.channels has {levels} stride-2 levels but the image size {image_size} is not divisible by "
            f"{2**levels}; use fewer channels entries or an image size that is a multiple of {2**levels}."
        )


class ConvEncoder(nn.Module):
    """x (N×C×S×S) → flat features, halving the resolution once per entry of ``channels``."""

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        image_size: int,
        batchnorm: bool = False,
        dropout: float = 0.0,
        activation: Activation = "leaky_relu",
    ):
        super().__init__()
        check_divisible(image_size, len(channels))
        layers: list[nn.Module] = []
        previous = in_channels
        for width in channels:
            layers += _block(nn.Conv2d(previous, width, 4, 2, 1), width, batchnorm, dropout, activation)
            previous = width
        self.net = nn.Sequential(*layers, nn.Flatten())
        self.out_features = channels[-1] * (image_size // 2 ** len(channels)) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """Vector → dense layers → (channels[-1]×s×s) → one ×2 upsampling per level → logits N×C×S×S."""

    def __init__(
        self,
        in_features: int,
        out_channels: int,
        channels: Sequence[int],
        image_size: int,
        dense_layers: Sequence[int] = (),
        batchnorm: bool = False,
        dropout: float = 0.0,
        activation: Activation = "leaky_relu",
        upsampling: Upsampling = "transpose",
    ):
        super().__init__()
        check_divisible(image_size, len(channels))
        self.start_shape = (channels[-1], image_size // 2 ** len(channels), image_size // 2 ** len(channels))
        dense: list[nn.Module] = []
        previous = in_features
        for width in (*dense_layers, channels[-1] * self.start_shape[1] ** 2):
            dense += [nn.Linear(previous, width), make_activation(activation)]
            previous = width
        self.dense = nn.Sequential(*dense)
        widths = [*reversed(channels), channels[0]]
        ups: list[nn.Module] = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            if upsampling == "transpose":
                conv: nn.Module = nn.ConvTranspose2d(width_in, width_out, 4, 2, 1)
            else:  # seed 004's second model: nearest upsampling then a plain convolution
                conv = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width_in, width_out, 3, 1, 1))
            ups += _block(conv, width_out, batchnorm, dropout, activation)
        self.ups = nn.Sequential(*ups, nn.Conv2d(channels[0], out_channels, 3, 1, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden = self.dense(features).view(-1, *self.start_shape)
        return self.ups(hidden)
