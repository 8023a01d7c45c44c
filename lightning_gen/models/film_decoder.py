"""A conv decoder whose every upsampling level is modulated by the condition (FiLM, Perez et al. 2018).

Joining the condition to z once, before the first dense layer, lets the decoder learn to ignore it
when z alone explains the training images; a per-level scale and shift keeps it in every layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lightning_gen.models.conv_stacks import Activation, Upsampling, check_divisible, make_activation


class FiLMConvDecoder(nn.Module):
    """(z ⊕ condition) → dense → (channels[-1]×s×s) → per level: ×2 upsampling conv, norm, FiLM(condition), activation → logits."""

    def __init__(
        self,
        latent_dim: int,
        condition_dim: int,
        out_channels: int,
        channels: Sequence[int],
        image_size: int,
        dense_layers: Sequence[int] = (),
        batchnorm: bool = False,
        activation: Activation = "leaky_relu",
        upsampling: Upsampling = "transpose",
    ):
        super().__init__()
        check_divisible(image_size, len(channels))
        side = image_size // 2 ** len(channels)
        self.start_shape = (channels[-1], side, side)
        dense: list[nn.Module] = []
        previous = latent_dim + condition_dim
        for width in (*dense_layers, channels[-1] * side * side):
            dense += [nn.Linear(previous, width), make_activation(activation)]
            previous = width
        self.dense = nn.Sequential(*dense)
        widths = [*reversed(channels), channels[0]]
        self.convs, self.norms, self.films = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            if upsampling == "transpose":
                self.convs.append(nn.ConvTranspose2d(width_in, width_out, 4, 2, 1))
            else:
                self.convs.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width_in, width_out, 3, 1, 1)))
            self.norms.append(nn.BatchNorm2d(width_out) if batchnorm else nn.Identity())
            film = nn.Linear(condition_dim, 2 * width_out)
            nn.init.zeros_(film.weight)  # starts as the identity: scale 1, shift 0
            nn.init.zeros_(film.bias)
            self.films.append(film)
        self.activation = make_activation(activation)
        self.head = nn.Conv2d(channels[0], out_channels, 3, 1, 1)

    def forward(self, z: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        hidden = self.dense(torch.cat([z, condition], 1)).view(-1, *self.start_shape)
        for conv, norm, film in zip(self.convs, self.norms, self.films):
            scale, shift = film(condition).chunk(2, dim=1)
            hidden = norm(conv(hidden)) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
            hidden = self.activation(hidden)
        return self.head(hidden)
