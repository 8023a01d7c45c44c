"""Trainer settings a command takes from ``--config``/``--trainer.*``, minus what the command decides itself."""

from __future__ import annotations

from typing import Any


def trainer_options(args: Any, drop: tuple[str, ...] = ("default_root_dir",)) -> dict[str, Any]:
    """The command then sets its own keys (logger, callbacks, ...) over these."""
    trainer = args.get("trainer") if hasattr(args, "get") else None
    if trainer is None:
        return {}
    options = trainer.as_dict() if hasattr(trainer, "as_dict") else dict(trainer)
    return {key: value for key, value in options.items() if key not in drop}
