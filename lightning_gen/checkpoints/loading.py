"""Load a model from a lightning_gen checkpoint alone (class, hyperparameters, data facts, EMA weights).

Every load is ``torch.load(weights_only=True)``: a checkpoint is data (tensors, dicts, lists, strings,
numbers), never code, so one shared by someone else cannot run anything when it is read. Its
``hyper_parameters``, passed to the model class, are checked against lightning_gen's allow-list
(``lightning_gen.config.trust``) first; Lightning's own ``_class_path``/``_instantiator`` entries are
dropped unread.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from lightning_gen.checkpoints.classes import model_class_from_checkpoint
from lightning_gen.checkpoints.snapshots import load_weight_snapshot
from lightning_gen.config.trust import CHECKPOINT_FIX, check_config
from lightning_gen.errors import UserError
from lightning_gen.models.base import GenerativeModel

_FORBIDDEN_GLOBAL = re.compile(r"(?:unsupported|Unsupported) (?:GLOBAL|global:?) ([\w.]+)")


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def unreadable_checkpoint_error(path: str | Path, error: BaseException) -> UserError:
    """The one-sentence error for a checkpoint torch.load refused (code in its pickle) or could not read."""
    if isinstance(error, pickle.UnpicklingError) and "weights only" in str(error).lower():
        found = _FORBIDDEN_GLOBAL.search(str(error))
        what = f"a pickled `{found.group(1)}`" if found else "a pickled object that is not plain data"
        return UserError(
            f"checkpoint {path} holds {what}, which lightning_gen does not load because unpickling it could run code; "
            f"pass a checkpoint written by lightning_gen."
        )
    return UserError(f"could not read checkpoint {path} ({_one_line(error)}); pass another --ckpt_path.")


def load_checkpoint_file(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; pass --ckpt_path with a .ckpt file from a run's checkpoints/ folder.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:  # code in the pickle, a truncated file from a killed session, a non-checkpoint, ...
        raise unreadable_checkpoint_error(path, error) from error
    if not isinstance(checkpoint, dict):
        raise UserError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint; pass a .ckpt file from a lightning_gen run.")
    return checkpoint


def load_model(path: str | Path, device: str | torch.device = "cpu") -> GenerativeModel:
    """The checkpoint's ``state_dict`` holds the EMA weights when EMA was on (Lightning's WeightAveraging puts them there)."""
    if Path(path).suffix == ".safetensors":  # a weights-only snapshot (lightning_gen.checkpoints.snapshots)
        return load_weight_snapshot(path, device)
    checkpoint = load_checkpoint_file(path)
    model_class = model_class_from_checkpoint(checkpoint, path)
    hyperparameters = {k: v for k, v in checkpoint.get("hyper_parameters", {}).items() if not k.startswith("_")}
    check_config(hyperparameters, f"checkpoint {path}", CHECKPOINT_FIX, "hyper_parameters", strings=False)
    model = model_class(**hyperparameters)
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval()
