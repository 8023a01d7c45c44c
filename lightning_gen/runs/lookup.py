"""Which run a checkpoint belongs to: the run directory beside it, its recorded location, its checked config."""

from __future__ import annotations

from pathlib import Path

from lightning_gen.config.trust import trusted_config
from lightning_gen.runs.directory import RunLocation, read_run_info


def run_directory_of_checkpoint(ckpt_path: str | Path) -> Path:
    """The run directory (``…/version_N``) for ``…/version_N/checkpoints/x.ckpt``; else the checkpoint's folder."""
    path = Path(ckpt_path).resolve()
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def trusted_run_directory(ckpt_path: str | Path) -> Path | None:
    """``<run>/checkpoints/x.ckpt`` with ``<run>/config.yaml`` beside it → ``<run>``, else None; a config naming a class
    outside the allow-list is refused here, before anything is computed (``lightning_gen.config.trust``)."""
    path = Path(ckpt_path).resolve()
    directory = path.parent.parent
    if path.parent.name != "checkpoints" or not (directory / "config.yaml").is_file():
        return None
    trusted_config(directory / "config.yaml")
    return directory


def run_location_of(ckpt_path: str | Path) -> RunLocation | None:
    """The run a checkpoint records it belongs to (its directory must still exist), or None for a checkpoint on its own."""
    info = read_run_info(ckpt_path)
    directory = info.get("run_directory")
    if not directory or not info.get("run_id") or not Path(directory).is_dir():
        return None
    return RunLocation(
        Path(directory).parent.parent, info.get("experiment", Path(directory).parent.name), Path(directory), run_id=info["run_id"]
    )
