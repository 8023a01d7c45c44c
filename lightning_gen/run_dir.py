"""Run directories: ``<default_root_dir>/<experiment>/version_<N>/`` holding config, checkpoints, images and W&B files."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

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
    experiment_dir.mkdir(parents=True, exist_ok=True)
    versions = _versions(experiment_dir)
    number = versions[-1][0] + 1 if versions else 0
    while True:
        directory = experiment_dir / f"version_{number}"
        try:
            directory.mkdir()  # claims the number: two runs started at once never share a directory
            break
        except FileExistsError:
            number += 1
    return RunLocation(Path(root), experiment, directory, run_id=secrets.token_hex(4))


def _readable(path: Path) -> Exception | None:
    """None when ``path`` loads as a checkpoint (memory-mapped: a truncated file fails at its zip directory, no tensor is read)."""
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:
        return error
    return None


def latest_checkpoint(root: str | Path, experiment: str) -> Path:
    """For ``--ckpt_path last``: the newest run's ``last.ckpt``, or, when that is unreadable (a session killed
    mid-copy), the run's newest readable periodic or best checkpoint, with one warning naming the bad file."""
    experiment_dir = Path(root) / experiment
    runs = [(max(files, key=lambda path: path.stat().st_mtime), files)
            for _, version in _versions(experiment_dir) for files in [sorted((version / "checkpoints").glob("*.ckpt"))] if files]
    if not runs:
        raise UserError(
            f"--ckpt_path last found no checkpoint of experiment '{experiment}' under {experiment_dir}/version_*/checkpoints/last.ckpt; "
            f"start the run without --ckpt_path, or pass --trainer.default_root_dir where the runs live (e.g. a mounted drive)."
        )
    _, files = max(runs, key=lambda run: run[0].stat().st_mtime)
    last = [path for path in files if path.name == "last.ckpt"]
    others = sorted((path for path in files if path.name != "last.ckpt"), key=lambda path: path.stat().st_mtime, reverse=True)
    unreadable: list[str] = []
    for candidate in [*last, *others]:
        error = _readable(candidate)
        if error is None:
            if unreadable:
                rank_zero_warn(f"{unreadable[0]} could not be read ({unreadable[1]}); resuming from {candidate}, "
                               f"the newest readable checkpoint of the run.")
            return candidate
        if not unreadable:
            unreadable = [str(candidate), f"{type(error).__name__}: {error}"]
    raise UserError(f"--ckpt_path last found no readable checkpoint in {files[0].parent} ({unreadable[0]} and "
                    f"{len(files) - 1} others fail to load: {unreadable[1]}); pass --ckpt_path with a good copy.")


def read_run_info(checkpoint_path: str | Path) -> dict[str, Any]:
    checkpoint = load_checkpoint_file(checkpoint_path, mmap=True)  # weights_only: a one-sentence UserError for code or a truncated file
    return dict(checkpoint.get(CHECKPOINT_KEY, {}))


def _is_run_directory(directory: Path) -> bool:
    return re.fullmatch(r"version_\d+", directory.name) is not None


def resumed_run(root: str | Path, checkpoint_path: str | Path, info: dict[str, Any]) -> RunLocation:
    """Continue the run that wrote ``checkpoint_path`` (``info`` = its read_run_info, holding a run id).

    The run directory is the one the checkpoint sits in (``<run>/checkpoints/x.ckpt``, also after the whole
    run was moved), else the one stored in the checkpoint if it exists here: a copy elsewhere must not make
    the resumed run write checkpoints, images and W&B files into whatever folder is its grandparent.
    """
    checkpoint_path = Path(checkpoint_path)
    parent = checkpoint_path.resolve().parent
    stored = Path(info["run_directory"]) if info.get("run_directory") else None
    if parent.name == "checkpoints" and _is_run_directory(parent.parent):
        directory = parent.parent
    elif stored is not None and stored.is_dir():
        directory = stored
        rank_zero_info(f"{checkpoint_path} lies outside its run directory; the resumed run writes to {stored}, where it was trained.")
    else:
        raise UserError(
            f"{checkpoint_path} is not in a run's checkpoints/ folder and the run directory it was written in "
            f"({stored or 'unknown'}) does not exist here; copy it to <run directory>/checkpoints/ and resume from there."
        )
    return RunLocation(Path(root), info["experiment"], directory, run_id=info["run_id"], resume_from=checkpoint_path)
