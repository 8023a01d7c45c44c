"""Weights-only snapshots: one safetensors file per snapshot, with what is needed to rebuild the model.

A snapshot holds the EMA weights (the ones ``sample`` uses) cast to bf16 by default, and in the
safetensors metadata the model class, its hyperparameters and the data facts as JSON — so
``load_model("…/snapshot-step0002000.safetensors")`` (and ``sample --ckpt_path`` with it) works without
the run's config, like a .ckpt file. It cannot resume training (no optimizer state, no raw weights):
last.ckpt does that.

A module's extra state (the VAE's fitted latent mixture: a dict of tensors) is kept too: its tensors at
their own dtype as ``<key>/<name>`` entries, its other values in the metadata (``lightning_gen_extra_state``).

Written by hand in the safetensors layout (8-byte header length, JSON header, raw tensor bytes)
because safetensors' save_file first converts every tensor to a bytes object in memory — a second
copy of the whole model, which a 1B-parameter model on a 24 GB machine does not have room for. Here
one tensor at a time is cast and written. Files are read with safetensors' own loader.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import safe_open

from lightning_gen.checkpoints.classes import model_class_from_checkpoint
from lightning_gen.checkpoints.files import atomic_write
from lightning_gen.checkpoints.keys import CHECKPOINT_KEY
from lightning_gen.config.trust import CHECKPOINT_FIX, check_config
from lightning_gen.errors import UserError
from lightning_gen.models.base import GenerativeModel

SAFETENSORS_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
METADATA_KEY = "lightning_gen"
EXTRA_STATE_KEY = "lightning_gen_extra_state"


def _stored(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The tensor as written: floating point cast to ``dtype``, on the CPU, contiguous."""
    tensor = tensor.detach()
    if tensor.is_floating_point():
        tensor = tensor.to(dtype)
    return tensor.to("cpu").contiguous()


def split_extra_state(state_dict: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], set[str], dict[str, dict[str, Any]]]:
    """A state_dict as safetensors entries: its tensors, the names of the extra-state tensors among them (kept at their
    own dtype: a mixture's Cholesky factors are float64), and each extra state's other values."""
    tensors: dict[str, torch.Tensor] = {}
    own_dtype: set[str] = set()
    plain: dict[str, dict[str, Any]] = {}
    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor):
            tensors[key] = value
            continue
        if not isinstance(value, Mapping):
            raise UserError(
                f"{key} in the model's state is a {type(value).__name__}, which a weight snapshot cannot hold; "
                "switch snapshots off with --snapshots.every_n_steps null."
            )
        plain[key] = {}
        for name, item in value.items():
            if isinstance(item, torch.Tensor):
                tensors[f"{key}/{name}"] = item
                own_dtype.add(f"{key}/{name}")
            else:
                plain[key][name] = item
    return tensors, own_dtype, plain


def write_snapshot_file(file: BinaryIO, state_dict: Mapping[str, Any], dtype: torch.dtype, metadata: dict[str, str]) -> None:
    state_dict, own_dtype, extra_state = split_extra_state(state_dict)
    if extra_state:
        metadata = {**metadata, EXTRA_STATE_KEY: json.dumps(extra_state)}
    names = sorted(state_dict)
    dtypes = {name: state_dict[name].dtype if name in own_dtype else dtype for name in names}
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name in names:
        tensor = state_dict[name]
        stored_dtype = dtypes[name] if tensor.is_floating_point() else tensor.dtype
        size = tensor.numel() * torch.empty((), dtype=stored_dtype).element_size()
        header[name] = {"dtype": SAFETENSORS_DTYPES[stored_dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # safetensors aligns the data to 8 bytes
    file.write(struct.pack("<Q", len(encoded)))
    file.write(encoded)
    for name in names:
        stored = _stored(state_dict[name], dtypes[name])
        file.write(memoryview(stored.reshape(-1).view(torch.uint8).numpy()))


def snapshot_metadata(pl_module: GenerativeModel, weights: str, global_step: int) -> dict[str, str]:
    checkpoint: dict[str, Any] = {"state_dict": {}}  # a model's hook may write its state there (the VAE's mixture)
    pl_module.on_save_checkpoint(checkpoint)  # model class and data facts, as in a .ckpt
    hyperparameters = {key: value for key, value in dict(pl_module.hparams).items() if not key.startswith("_")}
    try:
        info = json.dumps(
            {**checkpoint.get(CHECKPOINT_KEY, {}), "hyper_parameters": hyperparameters, "weights": weights, "global_step": global_step}
        )
    except TypeError as error:
        raise UserError(
            f"{type(pl_module).__name__}'s hyperparameters cannot be written to a weight snapshot ({error}); "
            "switch snapshots off with --snapshots.every_n_steps null."
        ) from error
    return {"format": "pt", METADATA_KEY: info}


def save_snapshot(path: str | Path, state_dict: Mapping[str, Any], dtype: torch.dtype, metadata: dict[str, str]) -> None:
    atomic_write(path, lambda file: write_snapshot_file(file, state_dict, dtype, metadata))


def read_snapshot_info(path: str | Path) -> dict[str, Any]:
    try:
        with safe_open(str(path), framework="pt") as snapshot:
            metadata = snapshot.metadata() or {}
    except Exception as error:
        raise UserError(f"could not read weight snapshot {path} ({type(error).__name__}: {error}); pass another file.") from error
    if METADATA_KEY not in metadata:
        raise UserError(
            f"{path} is not a lightning_gen weight snapshot (no model class recorded); pass a snapshot from a run's checkpoints/ folder."
        )
    return json.loads(metadata[METADATA_KEY])


def load_weight_snapshot(path: str | Path, device: str | torch.device = "cpu") -> GenerativeModel:
    """The model of a snapshot, in float32 (bf16 weights widened), in eval mode, on ``device``."""
    info = read_snapshot_info(path)
    model_class = model_class_from_checkpoint({CHECKPOINT_KEY: info}, path)  # lightning_gen models only, never an import of other code
    check_config(info["hyper_parameters"], f"weight snapshot {path}", CHECKPOINT_FIX, "hyper_parameters", strings=False)  # the allow-list
    model = model_class(**info["hyper_parameters"])
    expected = model.state_dict()
    with safe_open(str(path), framework="pt") as snapshot:
        extra_state = json.loads((snapshot.metadata() or {}).get(EXTRA_STATE_KEY, "{}"))
        state: dict[str, Any] = {key: dict(values) for key, values in extra_state.items()}
        for name in snapshot.keys():
            key, slash, item = name.partition("/")
            if slash and key in state:
                state[key][item] = snapshot.get_tensor(name)  # an extra-state tensor, at its own dtype
                continue
            tensor = snapshot.get_tensor(name)
            state[name] = tensor.to(expected[name].dtype) if isinstance(expected.get(name), torch.Tensor) else tensor
    model.load_state_dict(state)
    return model.to(device).eval()
