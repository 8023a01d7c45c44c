"""Image folders with official splits (<split>/<class>/<i>.png), for tests."""

from __future__ import annotations

from pathlib import Path

import torch


def image_folder_with_splits(root: Path, counts: dict[str, int]) -> Path:
    """``root/<split>/<class>/<i>.png`` with ``counts[split]`` images per class (classes a and b)."""
    from torchvision.utils import save_image

    generator = torch.Generator().manual_seed(0)
    for split, per_class in counts.items():
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            for index in range(per_class):
                save_image(torch.rand(3, 16, 16, generator=generator), root / split / name / f"{index}.png")
    return root
