"""What a resume checks before it touches a run, and what it keeps of the run's records.

- ``check_compatible``: a checkpoint continues only a model of its own shapes and data facts. The
  check reads the checkpoint as data (weights_only, memory-mapped: no tensor is read) and compares
  it with the model built from the new config *before* any logger, config or lock file is written,
  so a refused resume leaves the run directory as it was, with one sentence naming the differing
  settings and both values (instead of Lightning's ``state_dict`` RuntimeError after the run's
  ``config.yaml`` and ``hparams.yaml`` were already overwritten).
- ``keep_earlier_config``: every resume keeps the config the run had so far as
  ``config.resume-<N>.yaml`` (N = 1 for the first resume) before ``config.yaml`` is written anew.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

# Data facts that define what a run makes; a resume with another value is a different run (even when
# the weights' shapes would allow it, as a convolutional DDPM's do for another image size).
RUN_DEFINING_FACTS = ("image_size", "channels", "class_names", "attribute_names", "has_captions")
FACT_LABELS = {"channels": "image channels"}
_NOT_HYPERPARAMETERS = ("data_facts",)


@dataclass(frozen=True)
class CheckpointFacts:
    path: Path
    global_step: int
    hyper_parameters: dict[str, Any]
    shapes: dict[str, tuple[int, ...]]
    run_directory: str | None = None


@functools.lru_cache(maxsize=4)
def _facts(path: str, _mtime_ns: int, _size: int) -> CheckpointFacts | None:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None  # unreadable or holding code: the reads that need it say so in their own sentence
    if not isinstance(checkpoint, dict):
        return None
    state = checkpoint.get("state_dict") or {}
    shapes = {key: tuple(value.shape) for key, value in state.items() if isinstance(value, torch.Tensor)}
    section = checkpoint.get("lightning_gen") or {}
    return CheckpointFacts(
        Path(path),
        int(checkpoint.get("global_step") or 0),
        dict(checkpoint.get("hyper_parameters") or {}),
        shapes,
        section.get("run_directory"),
    )


def checkpoint_facts(path: str | Path) -> CheckpointFacts | None:
    """Step, hyperparameters and weight shapes of a checkpoint (cached per file version), or None when unreadable."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return _facts(str(path), stat.st_mtime_ns, stat.st_size)


def resume_step(path: str | Path | None) -> int | None:
    facts = checkpoint_facts(path) if path is not None else None
    return facts.global_step if facts is not None else None


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _described(value: Any) -> str:
    value = _plain(value)
    if isinstance(value, list) and len(value) > 4 and all(isinstance(item, str) for item in value):
        return f"{len(value)} names ({', '.join(value[:2])}, …)"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _flat_hyperparameters(hyper_parameters: dict[str, Any]) -> dict[str, Any]:
    flat = {key: _plain(value) for key, value in hyper_parameters.items() if not key.startswith("_") and key not in _NOT_HYPERPARAMETERS}
    for key, value in (hyper_parameters.get("data_facts") or {}).items():
        flat[FACT_LABELS.get(key, key)] = _plain(value)
    return flat


def _run_defining_differences(saved: dict[str, Any], configured: dict[str, Any]) -> list[str]:
    saved_facts, configured_facts = saved.get("data_facts") or {}, configured.get("data_facts") or {}
    return [
        FACT_LABELS.get(key, key)
        for key in RUN_DEFINING_FACTS
        if key in saved_facts and key in configured_facts and _plain(saved_facts[key]) != _plain(configured_facts[key])
    ]


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def incompatibility(facts: CheckpointFacts, model: pl.LightningModule, run_hint: str) -> str | None:
    """One sentence when the model built from the config cannot continue the checkpoint, else None."""
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items() if isinstance(value, torch.Tensor)}
    mismatched = [key for key in shapes if key in facts.shapes and shapes[key] != facts.shapes[key]]
    strict = model.strict_loading
    missing_or_extra = strict and set(shapes) != set(facts.shapes)
    configured_hparams = dict(model.hparams)
    saved, configured = _flat_hyperparameters(facts.hyper_parameters), _flat_hyperparameters(configured_hparams)
    differing = [key for key in saved if key in configured and saved[key] != configured[key]]
    defining = _run_defining_differences(facts.hyper_parameters, configured_hparams)
    # Missing or extra weights alone may be a model's own business (its checkpoint hooks); with a
    # changed hyperparameter they are the reason the weights do not fit.
    if not (mismatched or defining or (missing_or_extra and differing)):
        return None
    names = differing if (mismatched or missing_or_extra) else [key for key in differing if key in defining]
    if names:
        was = _and([f"{key} {_described(saved[key])}" for key in names])
        gives = _and([f"{key} {_described(configured[key])}" for key in names])
    else:  # no hyperparameter tells why: name the weights
        keys = mismatched[:2] or sorted(set(shapes) ^ set(facts.shapes))[:2]
        was = _and([f"{key} of shape {list(facts.shapes[key]) if key in facts.shapes else 'none'}" for key in keys])
        gives = _and([f"{list(shapes[key]) if key in shapes else 'none'}" for key in keys])
    return f"{facts.path} cannot continue with this config: it was trained with {was}, the config gives {gives}; {run_hint}"


def check_compatible(ckpt_path: str | Path, model: pl.LightningModule, resuming: bool) -> None:
    """Raise the one-sentence UserError of ``incompatibility`` (nothing is written before or by this check)."""
    from lightning_gen.errors import UserError

    facts = checkpoint_facts(ckpt_path)
    if facts is None:
        return
    parent = Path(ckpt_path).resolve().parent
    run = parent.parent if parent.name == "checkpoints" else Path(facts.run_directory) if facts.run_directory else None
    config = f"the run's own config ({run / 'config.yaml'})" if run is not None else "the config it was trained with"
    if resuming:
        hint = f"resume with {config}, or drop --ckpt_path to start a new run; the run directory is unchanged."
    else:
        hint = f"pass {config}."
    problem = incompatibility(facts, model, hint)
    if problem is not None:
        raise UserError(problem)


# -- the configs of a run's sessions ----------------------------------------------------------------
def _earlier(config_path: Path) -> list[tuple[int, Path]]:
    name = re.compile(rf"{re.escape(config_path.stem)}\.resume-(\d+){re.escape(config_path.suffix)}")
    found = [(int(match.group(1)), path) for path in config_path.parent.iterdir() if (match := name.fullmatch(path.name))]
    return sorted(found)


def earlier_configs(config_path: str | Path) -> list[Path]:
    """``config.resume-1.yaml``, ``config.resume-2.yaml``, … beside ``config_path``, in order."""
    config_path = Path(config_path)
    return [path for _, path in _earlier(config_path)] if config_path.parent.is_dir() else []


def keep_earlier_config(config_path: str | Path) -> Path | None:
    """Copy the run's current ``config.yaml`` to ``config.resume-<N>.yaml`` (the next free N) before a
    resume writes its own; returns the copy, or None when there is no earlier config (a new run)."""
    config_path = Path(config_path)
    if not config_path.is_file():
        return None
    earlier = _earlier(config_path)
    number = earlier[-1][0] + 1 if earlier else 1
    while True:
        target = config_path.with_name(f"{config_path.stem}.resume-{number}{config_path.suffix}")
        try:
            descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            number += 1
            continue
        with os.fdopen(descriptor, "wb") as copy, open(config_path, "rb") as original:
            shutil.copyfileobj(original, copy)
        return target
