"""Build a real RGB image set of 64×64 PNGs from Debian icon themes, offline through apt (no root, no install).

The images are artist-drawn colour icons (not photos), grouped by their freedesktop context folder
(``actions``, ``apps``, ``devices``, ``mimetypes``, ``places``, ``status``, …), which becomes the class:

1. ``apt-get download PKG`` + ``dpkg-deb -x PKG.deb DIR`` for each package (default: oxygen-icon-theme and
   gnome-icon-theme, the Debian themes with the most raster PNGs at ≥ 48 px);
2. one image per (theme, context, icon name): the smallest raster at ≥ 64 px, else the largest at ≥ ``min_size``
   (symlinks resolved, so an alias of another icon is the same file);
3. transparency composited on a fixed background (mid-grey 128 by default), resized to 64×64 with Lanczos
   antialiasing, deduplicated by the hash of the 64×64 result;
4. contexts with fewer than ``min_per_class`` images dropped; a seeded, stratified train/val/test split written as
   ``OUT/{train,val,test}/<context>/<theme>__<icon>.png`` (the split layout ImageFolderDataModule reads), with
   ``SOURCE.md`` and ``classes.json`` (packages, versions, licences, counts per class and split).

    python scripts/build_colour_set.py --out /work/data/colour64
    python scripts/build_colour_set.py --out OUT --theme-dir extracted/oxygen-icon-theme   # already extracted
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import shutil
import subprocess
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

PACKAGES = ("oxygen-icon-theme", "gnome-icon-theme")
SPLITS = ("train", "val", "test")
SIZE_FOLDER = re.compile(r"^(\d+)x(\d+)$")


@dataclass
class Theme:
    """An extracted icon-theme package: where its files are and what the package says about itself."""

    root: Path
    package: str = "unknown"
    version: str = "unknown"
    licences: list[str] = field(default_factory=list)


def licences_of(root: Path) -> list[str]:
    """The distinct ``License:`` fields of the package's Debian copyright file(s)."""
    found = []
    for copyright_file in sorted(root.glob("usr/share/doc/*/copyright")):
        for line in copyright_file.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("License:") and line[8:].strip() not in found:
                found.append(line[8:].strip())
    return found


def download(packages: list[str], workdir: Path) -> list[Theme]:
    """``apt-get download`` each package into ``workdir`` and extract it with ``dpkg-deb -x`` (needs no root)."""
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", *packages], cwd=workdir, check=True)
    themes = []
    for package in packages:
        deb = next(iter(sorted(workdir.glob(f"{package}_*.deb"))))
        target = workdir / package
        subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True)
        version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True).stdout.strip()
        themes.append(Theme(root=target, package=package, version=version, licences=licences_of(target)))
    return themes


def find_icons(root: Path, min_size: int = 48, prefer_size: int = 64) -> dict[tuple[str, str, str], Path]:
    """(theme, context, icon name) → the raster PNG to use, for every ``…/icons/<theme>/…/<N>x<N>/<context>/<name>.png``.

    Of the sizes ≥ ``min_size`` an icon comes in, the smallest ≥ ``prefer_size`` is taken (the artist's drawing at the
    target size, or the least downscaled one), else the largest. Links are resolved; dangling ones are skipped.
    """
    sizes: dict[tuple[str, str, str], dict[int, Path]] = defaultdict(dict)
    for path in sorted(root.rglob("*.png")):
        parts = path.relative_to(root).parts
        if "icons" not in parts[:-3] or not SIZE_FOLDER.match(parts[-3]):
            continue
        width, height = map(int, SIZE_FOLDER.match(parts[-3]).groups())
        resolved = path.resolve()
        if width != height or width < min_size or not resolved.is_file():
            continue
        theme = parts[parts.index("icons") + 1]
        sizes[(theme, parts[-2], path.stem)][width] = resolved
    chosen = {}
    for key, by_size in sizes.items():
        large = [size for size in by_size if size >= prefer_size]
        chosen[key] = by_size[min(large)] if large else by_size[max(by_size)]
    return chosen


def render(path: Path, size: int = 64, background: int = 128) -> Image.Image:
    """The icon as RGB on a flat ``background`` grey (alpha blended in float, rounded), resized with Lanczos."""
    rgba = np.asarray(Image.open(path).convert("RGBA"), dtype=np.float64)
    alpha = rgba[..., 3:] / 255.0
    rgb = np.round(rgba[..., :3] * alpha + background * (1.0 - alpha)).astype(np.uint8)
    image = Image.fromarray(rgb, "RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    return image


def split_names(names: list[str], seed: int, val_fraction: float, test_fraction: float, label: str) -> dict[str, list[str]]:
    """A seeded shuffle of one class's names cut into train/val/test (each class cut alike: stratified)."""
    order = sorted(names)
    random.Random(f"{seed}:{label}").shuffle(order)
    n_val, n_test = round(len(order) * val_fraction), round(len(order) * test_fraction)
    return {"val": order[:n_val], "test": order[n_val : n_val + n_test], "train": order[n_val + n_test :]}


def build(
    themes: list[Theme],
    out: Path,
    size: int = 64,
    background: int = 128,
    min_size: int = 48,
    min_per_class: int = 100,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> dict:
    """Render, deduplicate, filter and split the icons of ``themes`` into ``out``; returns what classes.json holds."""
    images: dict[str, dict[str, Image.Image]] = defaultdict(dict)  # context → file name → image
    seen: dict[str, str] = {}
    duplicates = 0
    for theme in themes:
        icons = find_icons(theme.root, min_size, size)
        # an icon's own file before the links that alias it, so the duplicate dropped is the alias
        for (theme_name, context, name), path in sorted(icons.items(), key=lambda item: (item[0][2] != item[1].stem, item[0])):
            image = render(path, size, background)
            digest = hashlib.sha256(image.tobytes()).hexdigest()
            if digest in seen:  # the same picture under another name, size or theme: keep the first
                duplicates += 1
                continue
            file_name = f"{theme_name}__{name}.png"
            seen[digest] = f"{context}/{file_name}"
            images[context][file_name] = image
    kept = {context: files for context, files in sorted(images.items()) if len(files) >= min_per_class}
    dropped = {context: len(files) for context, files in sorted(images.items()) if len(files) < min_per_class}
    if out.exists():
        for split in SPLITS:
            shutil.rmtree(out / split, ignore_errors=True)
    counts: dict[str, dict[str, int]] = {}
    for context, files in kept.items():
        counts[context] = {}
        for split, names in split_names(list(files), seed, val_fraction, test_fraction, context).items():
            folder = out / split / context
            folder.mkdir(parents=True, exist_ok=True)
            for file_name in names:
                files[file_name].save(folder / file_name)
            counts[context][split] = len(names)
    summary = {
        "classes": list(kept),
        "counts": counts,
        "totals": {split: sum(c[split] for c in counts.values()) for split in SPLITS},
        "dropped_classes": dropped,
        "duplicates_removed": duplicates,
        "image_size": size,
        "background_grey": background,
        "min_source_size": min_size,
        "min_per_class": min_per_class,
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "packages": [{"package": t.package, "version": t.version, "licences": t.licences} for t in themes],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "classes.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "SOURCE.md").write_text(source_markdown(summary), encoding="utf-8")
    return summary


def source_markdown(summary: dict) -> str:
    packages = "\n".join(
        f"- `{p['package']}` {p['version']} — licence: {', '.join(p['licences']) or 'see its copyright file'}" for p in summary["packages"]
    )
    rows = "\n".join(f"| {context} | {c['train']} | {c['val']} | {c['test']} |" for context, c in summary["counts"].items())
    totals = summary["totals"]
    return (
        "# Colour icon set (built by scripts/build_colour_set.py)\n\n"
        "Artist-drawn colour icons from Debian icon-theme packages (not photos), one class per freedesktop context folder, "
        f"composited on grey {summary['background_grey']}, resized to {summary['image_size']}×{summary['image_size']} (Lanczos), "
        f"deduplicated by the hash of the resized image ({summary['duplicates_removed']} duplicates removed), "
        f"classes with ≥ {summary['min_per_class']} images kept, split with seed {summary['seed']} "
        f"(val {summary['val_fraction']}, test {summary['test_fraction']}, per class).\n\n"
        f"Packages:\n{packages}\n\n"
        f"| class | train | val | test |\n| --- | --- | --- | --- |\n{rows}\n"
        f"| **total** | {totals['train']} | {totals['val']} | {totals['test']} |\n\n"
        f"Dropped (too few images): {summary['dropped_classes'] or 'none'}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the folder to write train/ val/ test/ into")
    parser.add_argument("--packages", nargs="+", default=list(PACKAGES), help="Debian icon-theme packages to apt-get download")
    parser.add_argument("--theme-dir", type=Path, nargs="*", default=None, help="already extracted package folders (skips apt)")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where the .deb files are downloaded and extracted (default: a temp folder)"
    )
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--background", type=int, default=128, help="grey level transparency is composited on")
    parser.add_argument("--min-size", type=int, default=48, help="smallest source raster size used")
    parser.add_argument("--min-per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    args = parser.parse_args()
    options = dict(
        size=args.size,
        background=args.background,
        min_size=args.min_size,
        min_per_class=args.min_per_class,
        seed=args.seed,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
    )
    if args.theme_dir:
        themes = [Theme(root=d, package=d.name, licences=licences_of(d)) for d in args.theme_dir]
        summary = build(themes, args.out, **options)
    else:
        with tempfile.TemporaryDirectory() as temp:
            summary = build(download(args.packages, args.workdir or Path(temp)), args.out, **options)
    print(f"{'class':<12} {'train':>6} {'val':>5} {'test':>5}")
    for context, c in summary["counts"].items():
        print(f"{context:<12} {c['train']:>6} {c['val']:>5} {c['test']:>5}")
    totals = summary["totals"]
    print(f"{'total':<12} {totals['train']:>6} {totals['val']:>5} {totals['test']:>5}")
    print(f"dropped classes: {summary['dropped_classes']}; duplicates removed: {summary['duplicates_removed']}; wrote {args.out}")


if __name__ == "__main__":
    main()
