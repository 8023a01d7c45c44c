"""The learned "no caption" embedding that classifier-free guidance contrasts against (a lightning_gen text DDPM's null text).

Shipped in a published pipeline folder as ``null_text/null_text.py``; diffusers loads it as a custom component.
"""

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn


class NullTextEmbedding(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, max_length: int = 64, width: int = 768):
        super().__init__()
        self.embedding = nn.Parameter(torch.zeros(max_length, width))

    def forward(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(n × max_length × width embeddings, n × max_length all-true mask)."""
        mask = torch.ones(n, self.embedding.shape[0], dtype=torch.bool, device=self.embedding.device)
        return self.embedding.expand(n, *self.embedding.shape), mask
