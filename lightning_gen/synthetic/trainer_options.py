"""Trainer settings a command takes from ``--config``/``--trainer.*``, minus what the command decides itself."""

from __future__ import annotations

from typing import Any

OWNED_BY_COMMAND = ("logger", "callbacks", "enable_checkpointing", "enable_progress_bar", "enable_model_summary", "default_root_dir")


def trainer_options(args: Any, drop: tuple[str, ...] = OWNED_BY_COMMAND) -> dict[str, Any]:
    trainer = args.get("trainer") if hasattr(args, "get") else None
    if trainer is None:
        return {}
    options = trainer.as_dict() if hasattr(trainer, "as_dict") else dict(trainer)
    return {key: value for key, value in options.items() if key not in drop}
