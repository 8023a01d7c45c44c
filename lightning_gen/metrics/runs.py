"""A sweep's runs on disk: found by the ``tracking.group`` in their saved ``config.yaml``, whatever logger they used.

Each run's config is read as data and checked against lightning_gen's allow-list (``lightning_gen.config.trust``)
before ``compare`` builds its datamodule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_gen.config.trust import check_config, read_config, trusted_config
from lightning_gen.errors import UserError

COMPARE_FIX = "remove it, or leave that run out of the comparison"

# Keys that differ between any two runs without making them different experiments.
NOT_A_SETTING = (
    "trainer.default_root_dir",
    "tracking.name",
    "tracking.group",
    "ckpt_path",
    "config",
    "trainer.logger",
    "trainer.callbacks",
)


@dataclass
class RunRecord:
    directory: Path
    checkpoint: Path
    config: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)  # the config flattened to dotted keys

    @property
    def name(self) -> str:
        return f"{self.directory.parent.name}/{self.directory.name}"

    @property
    def group(self) -> str:
        return (self.config.get("tracking") or {}).get("group") or self.directory.parent.name


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(config, dict):
        flat: dict[str, Any] = {}
        for key, value in config.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: tuple(config) if isinstance(config, list) else config}


def short_key(key: str) -> str:
    """``model.init_args.kl_weight`` → ``kl_weight`` (the last part a person would name)."""
    return key.rsplit(".", 1)[-1] if key.rsplit(".", 1)[-1] not in ("class_path",) else key.replace(".init_args", "")


def record_of(path: str | Path) -> RunRecord:
    """A run directory, or a checkpoint inside ``<run>/checkpoints/``."""
    path = Path(path)
    if path.is_file():
        directory, checkpoint = path.resolve().parent.parent, path
    else:
        directory, checkpoint = path.resolve(), path / "checkpoints" / "last.ckpt"
    config_path = directory / "config.yaml"
    if not config_path.is_file():
        raise UserError(
            f"{path} is not a run directory (no config.yaml at {config_path}); pass run directories, checkpoints inside them or --group."
        )
    if not checkpoint.is_file():
        raise UserError(f"run {directory} has no checkpoint at {checkpoint}; finish or resume its training first, or leave it out.")
    config = trusted_config(config_path, COMPARE_FIX)
    return RunRecord(directory, checkpoint, config, flatten(config))


def find_group(group: str, root: str | Path) -> list[RunRecord]:
    root = Path(root)
    found = []
    for config_path in sorted(root.rglob("config.yaml")):
        directory = config_path.parent
        if not (directory / "checkpoints" / "last.ckpt").is_file():
            continue
        config = read_config(config_path)
        tracking = config.get("tracking") or {}
        if (tracking.get("group") or directory.parent.name) == group:
            check_config(config, config_path, COMPARE_FIX)
            found.append(RunRecord(directory, directory / "checkpoints" / "last.ckpt", config, flatten(config)))
    if not found:
        raise UserError(
            f"no finished run of group '{group}' under {root} (looked for */config.yaml with tracking.group: "
            f"{group} and checkpoints/last.ckpt); check --group and --root."
        )
    return found


def varying_keys(records: list[RunRecord]) -> list[str]:
    keys = sorted({key for record in records for key in record.settings})
    return [key for key in keys if not key.startswith(NOT_A_SETTING) and len({repr(record.settings.get(key)) for record in records}) > 1]


def check_comparable(records: list[RunRecord], image_sizes: list[int]) -> None:
    datasets = {record.settings.get("data.class_path") for record in records}
    if len(datasets) > 1:
        raise UserError(f"these runs use different datasets ({', '.join(sorted(map(str, datasets)))}); compare runs of one dataset.")
    if len(set(image_sizes)) > 1:
        sizes = ", ".join(f"{record.name}: {size}px" for record, size in zip(records, image_sizes))
        raise UserError(f"these runs make images of different sizes ({sizes}); compare runs of one image size.")
