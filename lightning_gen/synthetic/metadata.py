"""metadata.jsonl in the Hugging Face imagefolder convention, and the settings an export may be resumed with.

``datasets.load_dataset("imagefolder", data_dir=DIR)`` reads ``DIR/metadata.jsonl``: one JSON object per
image whose ``file_name`` is relative to DIR; the other keys become columns. Our ``label`` is the class
folder's position in sorted order, which is how torchvision's ImageFolder and HF's own folder labels
number classes, so both readers agree on every image's label.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from lightning_gen.checkpoints.files import replace_file
from lightning_gen.errors import UserError
from lightning_gen.synthetic.plan import ExportItem

METADATA_FILE = "metadata.jsonl"
SETTINGS_FILE = ".export.json"  # hidden: neither imagefolder reader takes it for data


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_global_step(path: str | Path) -> int | None:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("global_step"))
    except Exception:  # a hand-saved checkpoint without a step, or one weights_only cannot read
        return None


def atomic_write_text(path: Path, text: str) -> None:
    replace_file(path, text)  # a temporary name of this writer's own: two writers never clobber one file


def check_or_write_settings(root: Path, settings: dict[str, Any]) -> None:
    """A re-run into the same folder must make the same images; otherwise the folder would mix two exports."""
    path = root / SETTINGS_FILE
    if path.is_file():
        previous = json.loads(path.read_text())
        changed = [key for key in settings if previous.get(key) != settings[key]]
        if changed:
            key = changed[0]
            raise UserError(
                f"--out {root} holds an export made with {key}={previous.get(key)!r}, not {settings[key]!r}; "
                f"re-run with the same options to fill it, or pass a new --out."
            )
        return
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(settings, indent=2, sort_keys=True))


def metadata_row(item: ExportItem, settings: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"file_name": item.file_name}
    if item.class_name is not None:
        row.update(label=item.label, class_name=item.class_name)
    if item.attributes is not None:
        row["attributes"] = list(item.attributes)
    if item.prompt is not None:
        row["prompt"] = item.prompt
    row.update(index=item.index, noise_seed=item.noise_seed)
    row.update({key: value for key, value in settings.items() if value is not None})
    return row


def write_metadata(root: Path, items: Iterable[ExportItem], settings: dict[str, Any]) -> int:
    """Rows for the planned images that are on disk; returns how many."""
    rows = [metadata_row(item, settings) for item in items if (root / item.file_name).is_file()]
    atomic_write_text(root / METADATA_FILE, "".join(json.dumps(row) + "\n" for row in rows))
    return len(rows)


def read_metadata(root: str | Path) -> list[dict[str, Any]]:
    path = Path(root) / METADATA_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
