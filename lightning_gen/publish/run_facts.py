"""What a run recorded about a checkpoint, for its model card: config, steps, time, hardware, evaluate's scores."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lightning_gen.checkpoints.loading import load_checkpoint_file
from lightning_gen.runs.lookup import trusted_run_directory


@dataclass(frozen=True)
class RunFacts:
    run_directory: Path | None
    config_text: str | None  # the run's resolved config.yaml, as written by fit
    config: dict[str, Any] = field(default_factory=dict)
    global_step: int | None = None
    epoch: int | None = None
    wall_time_s: float | None = None  # Lightning's Timer state, recorded when the run had --trainer.max_time
    scores: tuple[dict[str, Any], ...] = ()  # evaluate's <run>/evaluation/scores-*.json entries

    @property
    def hardware(self) -> str | None:
        """The accelerator setup the run's config asked for (what the trainer ran on), e.g. ``gpu × 1, 16-mixed``."""
        trainer = self.config.get("trainer") or {}
        if not trainer.get("accelerator"):
            return None
        parts = [f"{trainer['accelerator']} × {trainer.get('devices', 'auto')}"]
        if trainer.get("precision") not in (None, "32-true", 32, "32"):
            parts.append(str(trainer["precision"]))
        return ", ".join(parts)


def _timer_seconds(checkpoint: dict[str, Any]) -> float | None:
    for name, state in (checkpoint.get("callbacks") or {}).items():
        if str(name).startswith("Timer") and isinstance(state, dict):
            elapsed = (state.get("time_elapsed") or {}).get("train")
            if elapsed is not None:
                return float(elapsed)
    return None


def read_scores(run_directory: Path) -> tuple[dict[str, Any], ...]:
    scores = []
    for path in sorted((run_directory / "evaluation").glob("scores-*.json")):
        scores.extend(json.loads(path.read_text()).get("scores") or [])
    return tuple(scores)


def run_facts(ckpt_path: str | Path) -> RunFacts:
    checkpoint = load_checkpoint_file(ckpt_path, mmap=True)
    steps, epoch, wall = checkpoint.get("global_step"), checkpoint.get("epoch"), _timer_seconds(checkpoint)
    directory = trusted_run_directory(ckpt_path)
    if directory is None:
        return RunFacts(None, None, global_step=steps, epoch=epoch, wall_time_s=wall)
    text = (directory / "config.yaml").read_text()
    return RunFacts(directory, text, yaml.safe_load(text) or {}, steps, epoch, wall, read_scores(directory))
