"""Run directories: ``<default_root_dir>/<experiment>/version_<N>/`` holding config, checkpoints, images and W&B files."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning_gen.checkpoints import load_checkpoint_file
from lightning_gen.errors import UserError
from lightning_gen.models.base import CHECKPOINT_KEY



@dataclass
class RunLocation:
    root: Path
    experiment: str
    directory: Path
    run_id: str  # the W&B run id: new for a new run, read back from the checkpoint on resume
    resume_from: Path | None = None

    @property
    def checkpoints(self) -> Path:
        return self.directory / "checkpoints"

    @property
    def images(self) -> Path:
        return self.directory / "images"


def _versions(experiment_dir: Path) -> list[tuple[int, Path]]:
    found = []
    if experiment_dir.is_dir():
        for child in experiment_dir.iterdir():
            match = re.fullmatch(r"version_(\d+)", child.name)
            if match and child.is_dir():
                found.append((int(match.group(1)), child))
    return sorted(found)


def new_run(root: str | Path, experiment: str) -> RunLocation:
    # Absolute, so a resumed run's checkpoint callbacks recognise their own directory and files.
    experiment_dir = Path(root).resolve() / experiment
    versions = _versions(experiment_dir)
    number = versions[-1][0] + 1 if versions else 0
    directory = experiment_dir / f"version_{number}"
    return RunLocation(Path(root), experiment, directory, run_id=secrets.token_hex(4))


def latest_checkpoint(root: str | Path, experiment: str) -> Path:
    """The newest ``last.ckpt`` of an experiment, for ``--ckpt_path last``."""
    experiment_dir = Path(root) / experiment
    candidates = [path for _, version in _versions(experiment_dir) for path in [version / "checkpoints" / "last.ckpt"] if path.is_file()]
    if not candidates:
        raise UserError(
            f"--ckpt_path last found no checkpoint of experiment '{experiment}' under {experiment_dir}/version_*/checkpoints/last.ckpt; "
            f"start the run without --ckpt_path, or pass --trainer.default_root_dir where the runs live (e.g. a mounted drive)."
        )
    return max(candidates, key=lambda path: path.stat().st_mtime)


def read_run_info(checkpoint_path: str | Path) -> dict[str, Any]:
    checkpoint = load_checkpoint_file(checkpoint_path, mmap=True)  # weights_only: a one-sentence UserError for code or a truncated file
    return dict(checkpoint.get(CHECKPOINT_KEY, {}))


def resumed_run(root: str | Path, checkpoint_path: str | Path, info: dict[str, Any]) -> RunLocation:
    """Continue the run that wrote ``checkpoint_path`` (``info`` = its read_run_info, holding a run id)."""
    checkpoint_path = Path(checkpoint_path)
    directory = checkpoint_path.resolve().parent.parent
    return RunLocation(Path(root), info["experiment"], directory, run_id=info["run_id"], resume_from=checkpoint_path)
