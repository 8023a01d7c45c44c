"""Which option sets how many images are in memory at once, and its value: for the out-of-memory sentence."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DATA_BATCH_SIZE = "--data.init_args.batch_size"


def _get(section: Any, key: str) -> Any:
    return section.get(key) if isinstance(section, Mapping) or callable(getattr(section, "get", None)) else None


def batch_in_memory(args: Any = None, datamodule: Any = None) -> tuple[str, int | None]:
    """``--batch_size`` (evaluate, export, compare), else ``--num`` (sample), else the data's batch size: the
    built ``datamodule``'s (fit) or the one its config section asks for (the other commands)."""
    for key in ("batch_size", "num"):
        value = _get(args, key)
        if isinstance(value, int) and not isinstance(value, bool):
            return f"--{key}", value
    value = getattr(datamodule, "batch_size", None) if datamodule is not None else _get(_get(_get(args, "data"), "init_args"), "batch_size")
    return DATA_BATCH_SIZE, value if isinstance(value, int) and not isinstance(value, bool) else None
