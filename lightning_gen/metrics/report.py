"""Where evaluation numbers go: a terminal table, a JSON file, and the run the checkpoint belongs to."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning_gen.config.trust import trusted_config
from lightning_gen.metrics.evaluation import Score


def format_scores(scores: Sequence[Score]) -> str:
    header = ("metric", "value", "generated", "real", "seed", "data", "extractor")
    rows = [
        (
            s.key,
            f"{s.value:.5g}",
            str(s.generated),
            "" if s.real is None else str(s.real),
            "" if s.seed is None else str(s.seed),
            s.data,
            s.extractor or "",
        )
        for s in scores
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    notes = sorted({s.note for s in scores if s.note})
    return "\n".join(lines + [f"note: {note}" for note in notes])


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
    return path


def saved_config(run_directory: Path) -> dict[str, Any]:
    return trusted_config(run_directory / "config.yaml")


def log_to_wandb_run(run_directory: Path, run_id: str, scores: Sequence[Score], pngs: Sequence[Path]) -> bool:
    """Adds the scores to the run's W&B run, resumed by id (offline or online as the run was): summary values and a table."""
    from lightning_gen.config.settings import TrackingSettings
    from lightning_gen.tracking.loggers import wandb_offline

    tracking = saved_config(run_directory).get("tracking") or {}
    if tracking.get("logger", "wandb") != "wandb" or not (run_directory / "wandb").is_dir():
        return False
    import wandb

    settings = TrackingSettings(**{key: value for key, value in tracking.items() if key in TrackingSettings.__dataclass_fields__})
    run = wandb.init(
        project=settings.project, id=run_id, resume="allow", dir=str(run_directory),
        mode="offline" if wandb_offline(settings) else "online",
    )  # fmt: skip
    columns = ["metric", "value", "generated", "real", "seed", "data", "extractor", "note"]
    table = wandb.Table(columns=columns, data=[[s.key, s.value, s.generated, s.real, s.seed, s.data, s.extractor, s.note] for s in scores])
    run.summary.update({f"evaluate/{s.key}": s.value for s in scores})
    run.log({"evaluate/scores": table, **{f"evaluate/{png.stem}": wandb.Image(str(png)) for png in pngs}})
    run.finish()
    return True
