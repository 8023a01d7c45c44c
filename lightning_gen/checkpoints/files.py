"""Checkpoint files that a killed session, a full disk or a 1B-parameter model cannot break.

Lightning's TorchCheckpointIO serialises the whole checkpoint into an ``io.BytesIO`` and then copies
it out again (``getvalue()``) before an fsspec transaction writes it to a temporary file under /tmp
and moves it over the target: twice the checkpoint's size in extra host memory (a 16 GB checkpoint
needs 32 GB more), and across filesystems (a mounted Drive folder) the "move" is a copy over the
target, not an atomic rename. This plugin writes ``torch.save`` straight into an open temporary file
*in the destination directory* — torch's zip writer streams each tensor's storage to the file as it
goes — then flushes, fsyncs and ``os.replace``s it over the target, which is atomic on the same
filesystem. Loading memory-maps local files, so resuming a big run does not hold the file twice.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Optional, Union

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lightning_gen.errors import UserError
from lightning_gen.runs.processes import pid_alive

TEMPORARY_SUFFIX = ".partial"
PathLike = Union[str, os.PathLike]  # what CheckpointIO is given: a local path or an fsspec URL


def _is_local(path: PathLike) -> bool:
    return "://" not in str(path)  # s3://, gs://, memory:// ... keep Lightning's fsspec path


def temporary_path(target: Path) -> Path:
    """A hidden sibling of ``target`` named after the writing process (``.last.ckpt.<pid>.<random>.partial``):
    same directory, hence same filesystem, so the final rename is atomic."""
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")


def _writer_pid(temporary: Path, target: Path) -> int | None:
    middle = temporary.name[len(f".{target.name}.") : -len(TEMPORARY_SUFFIX)]
    pid, _, token = middle.partition(".")
    return int(pid) if pid.isdigit() and token else None  # None: written before the pid was in the name


def remove_stale_temporaries(target: Path) -> None:
    """Half-written files of ``target`` left by a session killed mid-save (each may be as big as a checkpoint).

    Only those of a process that no longer runs on this host (or of this process): one save never deletes
    another live process's file in flight. (The run lock keeps a second process out of a run anyway.)
    """
    for stale in target.parent.glob(f".{target.name}.*{TEMPORARY_SUFFIX}"):
        pid = _writer_pid(stale, target)
        if pid is None or pid == os.getpid() or not pid_alive(pid):
            stale.unlink(missing_ok=True)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; some filesystems (FUSE mounts such as Drive) do not support it.
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


class _WriteErrorRecorder:
    """A file wrapper that keeps the first OSError of a write: torch's zip writer re-raises it as a RuntimeError without errno."""

    def __init__(self, file: BinaryIO):
        self.file = file
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def flush(self) -> None:
        self.file.flush()


def atomic_write(target: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """``write(file)`` into a temporary file beside ``target``, fsynced, then renamed over it.

    On any failure (full disk, kill, exception) the previous ``target`` is untouched and the
    temporary file is removed (a SIGKILL leaves it; the next save of the same target removes it once its
    process is gone).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    temporary = temporary_path(target)
    recorder: _WriteErrorRecorder | None = None
    try:
        # os.open with mode 0o666 (not mkstemp's 0o600), so the file gets the umask's usual permissions.
        with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as file:
            recorder = _WriteErrorRecorder(file)
            write(recorder)  # type: ignore[arg-type]
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        cause = recorder.error if recorder is not None and recorder.error is not None else error
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise UserError(
                f"could not write checkpoint {target} ({os.strerror(cause.errno)}); the previous file is intact — "
                f"free space on {target.parent} or point --trainer.default_root_dir at a larger disk."
            ) from error
        raise
    _fsync_directory(target.parent)


def replace_file(target: str | Path, data: bytes | str) -> None:
    """``data`` (str: UTF-8) into a temporary file beside ``target`` named for this writer alone, then renamed over it.

    Two processes or threads writing the same target at once each rename their own complete file (the last rename
    wins); a reader never sees half a file. No fsync: for caches, exports and records, which a power cut may lose
    but never tear (checkpoints use ``atomic_write``).
    """
    target = Path(target)
    temporary = temporary_path(target)
    try:
        with open(temporary, "xb") as file:  # exclusive: a name collision fails rather than shares a file
            file.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: Any, target: str | Path) -> None:
    """``torch.save`` into an open file: torch's zip writer streams each tensor's storage straight to it."""
    atomic_write(target, lambda file: torch.save(obj, file))


class AtomicStreamingCheckpointIO(TorchCheckpointIO):
    """Lightning's TorchCheckpointIO with atomic, streamed local writes and memory-mapped local reads.

    Remote URLs (s3://, gs://, ...) keep Lightning's own fsspec path.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: PathLike, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None or not _is_local(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(
        self, path: PathLike, map_location: Optional[Callable] = lambda storage, loc: storage, weights_only: Optional[bool] = None
    ) -> dict[str, Any]:
        # weights_only=True whatever the caller asks: a shared checkpoint never runs code (lightning_gen/checkpoints.py).
        if not _is_local(path):
            return super().load_checkpoint(path, map_location, weights_only=True)
        if not Path(path).is_file():
            raise FileNotFoundError(f"Checkpoint file not found: {path}")
        # mmap: tensors are read from the page cache as they are copied into the model, not held twice.
        return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
