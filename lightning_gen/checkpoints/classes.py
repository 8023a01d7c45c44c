"""The model class a checkpoint names, looked up among lightning_gen's models: loading never imports other code."""

from __future__ import annotations

import importlib
import re
from typing import Any

from lightning_gen.checkpoints.keys import CHECKPOINT_KEY
from lightning_gen.errors import UserError
from lightning_gen.models.base import ModelBase


def _model_classes() -> dict[str, type[ModelBase]]:
    found: dict[str, type[ModelBase]] = {}
    pending = list(ModelBase.__subclasses__())
    while pending:
        cls = pending.pop()
        found[f"{cls.__module__}.{cls.__qualname__}"] = cls
        pending.extend(cls.__subclasses__())
    return found


def model_class_from_checkpoint(checkpoint: dict[str, Any], path: Any = "the checkpoint") -> type[ModelBase]:
    """The ModelBase subclass (a generator or the Judge) a checkpoint names; never imports a module outside lightning_gen.

    The name is looked up among the ModelBase subclasses already defined (lightning_gen's models and
    any the user imported); only a lightning_gen module is imported to find one, so a shared checkpoint
    naming e.g. ``os.system`` cannot make loading run anything.
    """
    section = checkpoint.get(CHECKPOINT_KEY)
    name = section.get("model_class") if isinstance(section, dict) else None
    if not isinstance(name, str):
        raise UserError(f"{path} was not written by lightning_gen (it records no model class); pass a checkpoint from a lightning_gen run.")
    classes = _model_classes()
    module_name = name.rpartition(".")[0]
    if name not in classes and re.fullmatch(r"lightning_gen(\.\w+)+", module_name):
        try:
            importlib.import_module(module_name)
        except ImportError:
            pass
        classes = _model_classes()
    if name not in classes:
        known = ", ".join(sorted(classes))
        raise UserError(
            f"{path} names the model class '{name}', which is not a lightning_gen model ({known}); pass a "
            f"checkpoint from a lightning_gen run."
        )
    return classes[name]
