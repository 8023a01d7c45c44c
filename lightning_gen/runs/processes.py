"""Whether a process recorded by pid (in a run lock, in a temporary file's name) still runs on this host."""

from __future__ import annotations

import os
from pathlib import Path


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), which tells a reused pid from the original."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if len(fields) > 19 else None


def pid_alive(pid: int, started: str | None = None) -> bool:
    """Whether ``pid`` runs on this host (a zombie does not; with ``started``, its process_start, a pid reused by
    another process does not either)."""
    if os.name != "posix":
        return True  # no cheap, harmless test (os.kill(pid, 0) ends a process on Windows): assume it runs
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    if state in ("Z", "X"):
        return False
    return started is None or process_start(pid) in (None, started)
