"""VAEs and CVAEs as a ``config.json`` + ``model.safetensors`` folder that huggingface_hub's mixin loads back.

``PublishedModel.from_pretrained(folder_or_repo)`` rebuilds the lightning_gen model from the config (its class,
looked up among lightning_gen's models only, and its hyperparameters, checked like a checkpoint's) and loads the
weights; ``.model`` is the VAE/CVAE itself, and ``encode``/``decode``/``reconstruct``/``sample`` pass through.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from lightning_gen.checkpoints.classes import model_class_from_checkpoint
from lightning_gen.checkpoints.keys import CHECKPOINT_KEY
from lightning_gen.config.trust import CHECKPOINT_FIX, check_config, plain_data
from lightning_gen.models.base import GenerativeModel

EXTRA_STATE = "_extra_state"  # torch's state_dict key for a module's get_extra_state (the VAE's fitted latent mixture)


class PublishedModel(nn.Module, PyTorchModelHubMixin, library_name="lightning_gen", tags=["lightning_gen", "vae"]):
    """A lightning_gen model behind huggingface_hub's ``save_pretrained``/``from_pretrained``/``push_to_hub``."""

    def __init__(self, model_class: str, hyper_parameters: dict[str, Any]):
        super().__init__()
        cls = model_class_from_checkpoint({CHECKPOINT_KEY: {"model_class": model_class}}, "config.json")
        check_config(hyper_parameters, "config.json", CHECKPOINT_FIX, "hyper_parameters", strings=False)
        self.model: GenerativeModel = cls(**hyper_parameters)
        self.model.eval()

    @classmethod
    def wrap(cls, model: GenerativeModel) -> PublishedModel:
        """The published form of a loaded model, with its current weights."""
        model_class = f"{type(model).__module__}.{type(model).__qualname__}"
        hyper_parameters = {key: value for key, value in dict(model.hparams).items() if not key.startswith("_")}
        published = cls(model_class, plain_data(hyper_parameters))
        published.model.load_state_dict(model.state_dict())
        return published

    # safetensors holds tensors only: a module's extra state (a dict of tensors) is stored as one tensor per entry.
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        flat = {}
        for key, value in super().state_dict(*args, **kwargs).items():
            if key.endswith(EXTRA_STATE) and isinstance(value, dict):
                flat.update({f"{key}.{name}": item for name, item in value.items() if isinstance(item, torch.Tensor)})
            else:
                flat[key] = value
        return flat

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False) -> Any:
        nested: dict[str, Any] = {}
        for key in super().state_dict():
            if key.endswith(EXTRA_STATE):
                entries = {name[len(key) + 1 :]: value for name, value in state_dict.items() if name.startswith(f"{key}.")}
                nested[key] = {"fitted": bool(entries), **entries}
        plain = {key: value for key, value in state_dict.items() if not any(key.startswith(f"{extra}.") for extra in nested)}
        return super().load_state_dict({**plain, **nested}, strict=strict, assign=assign)

    def encode(self, x: torch.Tensor, condition: Any = None) -> torch.Tensor:
        return self.model.encode(x, condition)

    def decode(self, z: torch.Tensor, condition: Any = None) -> torch.Tensor:
        return self.model.decode(z, condition)

    def reconstruct(self, x: torch.Tensor, condition: Any = None) -> torch.Tensor:
        return self.model.reconstruct(x, condition)

    def sample(self, n: int, condition: Any = None, generator: torch.Generator | None = None, **options: Any) -> torch.Tensor:
        return self.model.sample(n, condition, generator, **options)


def export_vae(model: GenerativeModel, folder: str | Path) -> PublishedModel:
    published = PublishedModel.wrap(model)
    published.save_pretrained(folder)
    return published
