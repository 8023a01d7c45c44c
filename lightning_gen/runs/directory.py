"""Run directories: ``<default_root_dir>/<experiment>/version_<N>/`` holding config, checkpoints, images and W&B files.

A version number is claimed with ``os.mkdir`` (which fails when the folder exists), so two fits started
at once never share a directory. A fit holds ``run.lock`` in its directory (pid, host, heartbeat) while
it runs, so a second process resuming the same run is refused instead of racing it. A start that
fails before training leaves no directory behind: the next run is still ``version_0``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lightning_gen.checkpoints.keys import CHECKPOINT_KEY
from lightning_gen.checkpoints.loading import load_checkpoint_file
from lightning_gen.errors import UserError
from lightning_gen.runs.processes import pid_alive
from lightning_gen.runs.processes import process_start as _process_start


@dataclass
class RunLocation:
    root: Path
    experiment: str
    directory: Path
    run_id: str  # the W&B run id: new for a new run, read back from the checkpoint on resume
    resume_from: Path | None = None
    # The outermost folder new_run created (the version folder, or the experiment/root folder it made
    # first): what a failed start removes again. None for a resumed run and on the ranks that adopt rank 0's.
    created: Path | None = None

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


# -- experiment names -------------------------------------------------------------------------------
_UNSAFE_NAME = re.compile(r"[/\\:\x00-\x1f]")


def experiment_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be the folder ``<root>/<name>/`` (a separator, ``..``, a drive), or None."""
    if not name.strip():
        return "is empty"
    if name in (".", ".."):
        return f"would name {'the runs folder itself' if name == '.' else 'the folder above the runs folder'}"
    found = _UNSAFE_NAME.search(name)
    if found:
        char = {"/": "'/'", "\\": "'\\'", ":": "':'"}.get(found.group(0), "a control character")
        return f"holds {char}"
    return None


def checked_experiment_name(name: str, option: str = "--tracking.name") -> str:
    """``name`` when it is one folder name inside the runs folder; otherwise one sentence saying why not."""
    problem = experiment_name_problem(name)
    if problem is None:
        return name
    suggestion = re.sub(r"[/\\:\x00-\x1f]+", "_", name).strip("._- ") or "my_experiment"
    raise UserError(
        f"{option} '{name}' {problem}; it must be one folder name inside the runs folder (<root>/<name>/version_N), such as '{suggestion}'."
    )


def run_directory_of_file(path: str | Path) -> Path | None:
    """The run directory ``path`` sits in (``<root>/<experiment>/version_N/config.yaml``), or None."""
    parent = Path(path).resolve().parent
    return parent if _is_run_directory(parent) else None


def experiment_of_config_file(path: str | Path) -> str:
    """The experiment a config file starts: its run's when it is a run's saved config, else the file's stem."""
    run = run_directory_of_file(path)
    name = run.parent.name if run is not None else Path(path).stem
    return name if experiment_name_problem(name) is None else re.sub(r"[/\\:\x00-\x1f]+", "_", name).strip(".") or "default"


def _first_missing(directory: Path) -> Path | None:
    missing = None
    for folder in [directory, *directory.parents]:
        if folder.exists():
            break
        missing = folder
    return missing


def new_run(root: str | Path, experiment: str) -> RunLocation:
    # Absolute, so a resumed run's checkpoint callbacks recognise their own directory and files.
    root_dir = Path(root).resolve()
    experiment_dir = root_dir / checked_experiment_name(experiment)
    created = _first_missing(experiment_dir)
    experiment_dir.mkdir(parents=True, exist_ok=True)
    versions = _versions(experiment_dir)
    number = versions[-1][0] + 1 if versions else 0
    while True:
        directory = experiment_dir / f"version_{number}"
        try:
            directory.mkdir()  # claims the number atomically: two runs started at once never share a directory
            break
        except FileExistsError:
            number += 1
        except FileNotFoundError:  # a failed start elsewhere removed the (then empty) experiment folder
            experiment_dir.mkdir(parents=True, exist_ok=True)
    return RunLocation(Path(root), experiment, directory, run_id=secrets.token_hex(4), created=created or directory)


def abandon_failed_start(run: RunLocation | None, global_step: int = 0) -> bool:
    """Remove the directory of a new run that failed before it trained a step or saved a checkpoint.

    Only the process that created it calls this (``run.created`` is set by new_run alone), so a config
    error never leaves an empty ``version_0`` behind and the real first run is still ``version_0``.
    """
    if run is None or run.created is None or run.resume_from is not None or global_step > 0:
        return False
    if any(run.checkpoints.glob("*.ckpt")) or any(run.checkpoints.glob("*.safetensors")):
        return False
    shutil.rmtree(run.directory, ignore_errors=True)
    folder = run.directory.parent
    while run.created != run.directory and folder != run.created.parent and run.created in [folder, *folder.parents]:
        try:
            folder.rmdir()  # only if empty: another run may have appeared meanwhile
        except OSError:
            break
        folder = folder.parent
    return True


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
    runs = [
        (max(files, key=lambda path: path.stat().st_mtime), files)
        for _, version in _versions(experiment_dir)
        for files in [sorted((version / "checkpoints").glob("*.ckpt"))]
        if files
    ]
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
                rank_zero_warn(
                    f"{unreadable[0]} could not be read ({unreadable[1]}); resuming from {candidate}, "
                    f"the newest readable checkpoint of the run."
                )
            return candidate
        if not unreadable:
            unreadable = [str(candidate), f"{type(error).__name__}: {error}"]
    raise UserError(
        f"--ckpt_path last found no readable checkpoint in {files[0].parent} ({unreadable[0]} and "
        f"{len(files) - 1} others fail to load: {unreadable[1]}); pass --ckpt_path with a good copy."
    )


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


# -- one process per run ----------------------------------------------------------------------------
LOCK_NAME = "run.lock"
HEARTBEAT_SECONDS = 30.0
# A lock from another host (a shared or mounted runs folder) is stale once its heartbeat is this old;
# on this host the holder's pid answers at once.
FOREIGN_STALE_SECONDS = 300.0
_HELD: set[str] = set()  # tokens of the locks this process holds


def _slurm_job() -> tuple[str, int] | None:
    job = os.environ.get("SLURM_JOB_ID")
    return (job, int(os.environ.get("SLURM_RESTART_COUNT") or 0)) if job else None


def _read_holder(path: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and "pid" in holder and "host" in holder else None


def _stale_reason(holder: dict[str, Any], path: Path) -> str | None:
    """Why the lock ``holder`` wrote is no longer held by a running process, or None while it is."""
    pid, host = int(holder["pid"]), str(holder["host"])
    if host == socket.gethostname():
        if pid == os.getpid():
            return None if holder.get("token") in _HELD else f"pid {pid} (this process) left it behind"
        return None if pid_alive(pid, holder.get("process_start")) else f"pid {pid} on {host} is no longer running"
    job, now = holder.get("slurm_job"), _slurm_job()
    if job and now and job[0] == now[0] and int(job[1]) < now[1]:
        return f"SLURM job {job[0]} was requeued"
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        return None
    return f"its heartbeat from {host} stopped {age:.0f} s ago" if age > FOREIGN_STALE_SECONDS else None


def _held_error(holder: dict[str, Any], path: Path) -> UserError:
    pid, host = holder["pid"], holder["host"]
    since = f" since {holder['started']}" if holder.get("started") else ""
    if host == socket.gethostname():
        how = f"wait for it to end or stop it (kill {pid}), then run the command again; drop --ckpt_path to start a separate run"
    else:
        how = (
            f"if that process is gone (a closed Colab runtime, a dead node), the lock is taken over "
            f"{FOREIGN_STALE_SECONDS:.0f} s after its last heartbeat, or delete {path} now; drop --ckpt_path to start a separate run"
        )
    return UserError(f"run {path.parent} is in use by pid {pid} on host {host}{since} (its lock {path.name}); {how}.")


class RunLock:
    """``run.lock`` in a run directory: created exclusively, holding pid, host and start, touched every
    HEARTBEAT_SECONDS while held, removed on release. A lock whose process is gone is taken over."""

    def __init__(self, directory: Path):
        self.path = Path(directory) / LOCK_NAME
        self.token = secrets.token_hex(8)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> RunLock:
        for _ in range(50):
            try:
                descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._handle_existing()
                continue
            with os.fdopen(descriptor, "w") as file:
                json.dump(self._content(), file)
                file.flush()
                os.fsync(file.fileno())
            _HELD.add(self.token)
            self._thread = threading.Thread(target=self._heartbeat, name="lightning_gen-run-lock", daemon=True)
            self._thread.start()
            return self
        raise UserError(f"could not take the lock {self.path} (other processes keep taking it); run one process on a run at a time.")

    def _content(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now().isoformat(timespec="seconds"),
            "process_start": _process_start(os.getpid()),
            "slurm_job": _slurm_job(),
            "token": self.token,
        }

    def _handle_existing(self) -> None:
        holder = _read_holder(self.path)
        if holder is None:  # being written this instant, or garbage left by a crash mid-write
            try:
                young = time.time() - self.path.stat().st_mtime < 10
            except FileNotFoundError:
                return
            if young:
                time.sleep(0.1)
                return
            holder = {"pid": "?", "host": "?"}
            reason: str | None = "it is unreadable"
        else:
            reason = _stale_reason(holder, self.path)
        if reason is None:
            raise _held_error(holder, self.path)
        # Take it over by moving it aside (only one of two processes doing this at once succeeds) and
        # checking that what was moved is the stale lock, not a fresh one that replaced it meanwhile.
        aside = self.path.with_name(f"{self.path.name}.{self.token}.stale")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        moved = _read_holder(aside)
        if moved is not None and holder.get("token") != moved.get("token"):
            try:
                os.link(aside, self.path)  # put the fresh lock back (fails if yet another one exists)
            except OSError:
                pass
            aside.unlink(missing_ok=True)
            return
        aside.unlink(missing_ok=True)
        rank_zero_info(f"Taking over the stale lock {self.path} ({reason}).")

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        holder = _read_holder(self.path)
        if holder is not None and holder.get("token") == self.token:
            self.path.unlink(missing_ok=True)
        _HELD.discard(self.token)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def lock_run(run: RunLocation) -> RunLock:
    """Hold ``run.lock`` in the run directory (call on global rank 0 only); a one-sentence UserError when another process holds it."""
    return RunLock(run.directory).acquire()
