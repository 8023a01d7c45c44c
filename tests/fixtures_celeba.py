"""A CelebA folder in the real layout (img_align_celeba/, the attribute and partition lists; or Kaggle's CSVs), for tests."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from lightning_gen.data.celeba import ATTRIBUTE_NAMES

COUNT = 12


BLOND, SMILING, MALE = ATTRIBUTE_NAMES.index("Blond_Hair"), ATTRIBUTE_NAMES.index("Smiling"), ATTRIBUTE_NAMES.index("Male")


def attribute_signs(number: int) -> list[int]:
    """±1 per attribute of image ``number`` (1-based); image 3 is blond and smiling and not male."""
    signs = [1 if (number + column) % 3 == 0 else -1 for column in range(len(ATTRIBUTE_NAMES))]
    if number == 3:
        signs[BLOND], signs[SMILING], signs[MALE] = 1, 1, -1
    return signs


def write_celeba(root: Path, count: int = COUNT, partition: bool = True, kaggle_csv: bool = False) -> None:
    images = root / "img_align_celeba"
    if kaggle_csv:
        images = images / "img_align_celeba"
    images.mkdir(parents=True)
    for number in range(1, count + 1):
        # A blue frame outside the central 148×148 face crop; inside, red encodes the image number.
        image = Image.new("RGB", (178, 218), (0, 0, 255))
        image.paste((number * 20, 100, 0), (15, 35, 163, 183))
        image.save(images / f"{number:06d}.jpg", quality=95)
    names = [f"{number:06d}.jpg" for number in range(1, count + 1)]
    splits = ["0"] * (count - 4) + ["1"] * 2 + ["2"] * 2
    if kaggle_csv:
        rows = ["image_id," + ",".join(ATTRIBUTE_NAMES)]
        rows += [f"{name}," + ",".join(str(s) for s in attribute_signs(n)) for n, name in enumerate(names, 1)]
        (root / "list_attr_celeba.csv").write_text("\n".join(rows) + "\n")
        split_rows = ["image_id,partition"] + [f"{name},{split}" for name, split in zip(names, splits)]
        (root / "list_eval_partition.csv").write_text("\n".join(split_rows) + "\n")
        return
    # The real file: count, names with a trailing space, then values right-aligned in width 2, space-separated.
    rows = [str(count), " ".join(ATTRIBUTE_NAMES) + " "]
    rows += [f"{name} " + " ".join(f"{s:2d}" for s in attribute_signs(n)) for n, name in enumerate(names, 1)]
    (root / "list_attr_celeba.txt").write_text("\n".join(rows) + "\n")
    if partition:
        (root / "list_eval_partition.txt").write_text("".join(f"{n} {s}\n" for n, s in zip(names, splits)))
