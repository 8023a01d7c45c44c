"""What a checkpoint must hold to resume the *run*, not just the weights: run id, directory, RNG streams.

Lightning restores weights, optimizer, schedulers, loops and callback states, but not the random
number generators; with them restored, a resumed run draws the same noise as an uninterrupted one.

Optimizer settings: Lightning's restore puts the checkpoint's learning rate, betas, weight decay, …
back into the optimizer, whatever the resume's config says, while ``config.yaml`` records the config.
Here the resume's config wins: a setting it changes (``--model.init_args.optimizer.init_args.lr``)
is applied after the restore, in one line, keeping the optimizer's moments and the schedule's
position (a scheduled rate is rescaled by new/old), so ``config.yaml`` states what the run trains
with. Each checkpoint records the settings in force, which is what the next resume compares with.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info

from lightning_gen.checkpoints.keys import CHECKPOINT_KEY
from lightning_gen.runs.directory import RunLocation
from lightning_gen.tracking.loggers import wandb_files


def capture_rng() -> dict[str, Any]:
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": position,
            "has_gauss": has_gauss,
            "cached": cached,
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached"],
        )
    )
    python_state = state["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


OPTIMIZER_SETTINGS_KEY = "optimizer_settings"
_NOT_SETTINGS = {"params", "initial_lr"}


def _is_setting(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_is_setting(item) for item in value)
    return value is None or isinstance(value, (bool, int, float, str))


def _plain(value: Any) -> Any:
    return [_plain(item) for item in value] if isinstance(value, (list, tuple)) else value


def optimizer_settings(optimizers: list[torch.optim.Optimizer]) -> list[list[dict[str, Any]]]:
    """Each optimizer's param groups' settings (lr, betas, weight_decay, …) as plain data, without the parameters."""
    return [
        [
            {key: copy.copy(value) for key, value in group.items() if key not in _NOT_SETTINGS and _is_setting(value)}
            for group in optimizer.param_groups
        ]
        for optimizer in optimizers
    ]


def _settings_of_old_checkpoint(checkpoint: dict[str, Any]) -> list[list[dict[str, Any]]] | None:
    """For a checkpoint written before the settings were recorded: its restored param groups, the schedule's base rate as lr."""
    states = checkpoint.get("optimizer_states")
    if not states:
        return None
    scheduled = bool(checkpoint.get("lr_schedulers"))
    settings = []
    for state in states:
        groups = []
        for group in state.get("param_groups", []):
            values = {key: value for key, value in group.items() if key not in _NOT_SETTINGS and _is_setting(value)}
            if "initial_lr" in group:
                values["lr"] = group["initial_lr"]
            elif scheduled:
                values.pop("lr", None)  # a schedule (ReduceLROnPlateau) moved it: no way to tell the configured one
            groups.append(values)
        settings.append(groups)
    return settings


def _format(value: Any) -> str:
    value = _plain(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def apply_config_settings(
    trainer: pl.Trainer, configured: list[list[dict[str, Any]]], saved: list[list[dict[str, Any]]]
) -> list[tuple[str, Any, Any]]:
    """Put the settings the resume's config changed (``configured`` vs the checkpoint's ``saved``) into the
    restored optimizers; returns (key, checkpoint value, config value) for each change."""
    changes: dict[str, tuple[str, Any, Any]] = {}
    for optimizer, configured_groups, saved_groups in zip(trainer.optimizers, configured, saved):
        if len(configured_groups) != len(saved_groups) or len(optimizer.param_groups) != len(configured_groups):
            continue
        schedulers = [
            config.scheduler for config in trainer.lr_scheduler_configs if getattr(config.scheduler, "optimizer", None) is optimizer
        ]
        for number, (group, wanted, had) in enumerate(zip(optimizer.param_groups, configured_groups, saved_groups)):
            for key, new in wanted.items():
                if key not in had or _plain(had[key]) == _plain(new):
                    continue
                old = had[key]
                if key == "lr" and isinstance(new, (int, float)) and isinstance(old, (int, float)):
                    group["lr"] = group["lr"] * new / old if old else new  # the schedule's position carries on
                    if "initial_lr" in group:
                        group["initial_lr"] = new
                    for scheduler in schedulers:
                        if hasattr(scheduler, "base_lrs") and number < len(scheduler.base_lrs):
                            scheduler.base_lrs[number] = new
                        if hasattr(scheduler, "_last_lr"):
                            scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
                else:
                    group[key] = copy.copy(new)
                changes.setdefault(key, (key, old, new))
    return list(changes.values())


class RunState(pl.Callback):
    def __init__(self, run: RunLocation):
        self.run = run
        self._pending_rng: dict[str, Any] | None = None
        self._configured: list[list[dict[str, Any]]] | None = None  # the config's optimizer settings (new run or resume)
        self._saved: list[list[dict[str, Any]]] | None = None  # the checkpoint's, on a resume

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        section = checkpoint.setdefault(CHECKPOINT_KEY, {})
        section.update(
            {"run_id": self.run.run_id, "experiment": self.run.experiment, "run_directory": str(self.run.directory), "rng": capture_rng()}
        )
        if self._configured is not None:
            section[OPTIMIZER_SETTINGS_KEY] = self._configured

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        section = checkpoint.get(CHECKPOINT_KEY, {})
        self._pending_rng = section.get("rng")
        self._saved = section.get(OPTIMIZER_SETTINGS_KEY) or _settings_of_old_checkpoint(checkpoint)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After the sanity check, right before the first resumed batch: the point the checkpoint was taken at.
        if self._pending_rng is not None:
            restore_rng(self._pending_rng)
            self._pending_rng = None
        if self._configured is not None and self._saved is not None:  # Lightning has restored the optimizers by now
            changes = apply_config_settings(trainer, self._configured, self._saved)
            self._saved = None
            if changes:
                now = " and ".join(f"{key} {_format(new)}" for key, _, new in changes)
                before = " and ".join(f"{key} {_format(old)}" for key, old, _ in changes)
                rank_zero_info(
                    f"Resuming with the config's {now} instead of the checkpoint's {before}: on a resume the config wins "
                    f"for optimizer settings (config.yaml records them; the optimizer's moments and the schedule's position carry on)."
                )

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The optimizers exist and hold the config's settings; Lightning restores a checkpoint's only after this hook.
        self._configured = optimizer_settings(trainer.optimizers)
        verb = f"Resuming from {self.run.resume_from}" if self.run.resume_from else "Starting a new run"
        rank_zero_info(f"{verb}; run directory: {self.run.directory} (W&B/run id {self.run.run_id})")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        scores = {key: float(value) for key, value in trainer.callback_metrics.items() if key.startswith("val/")}
        lines = [
            "Final validation (EMA weights where EMA is on): " + ", ".join(f"{key} {value:.4g}" for key, value in sorted(scores.items())),
            f"Run directory: {self.run.directory}",
            f"  checkpoints: {self.run.checkpoints} (resume with --ckpt_path last)",
            f"  image grids: {self.run.images}",
        ]
        offline_runs = [path for path in wandb_files(self.run.directory) if path.name.startswith("offline-run")]
        if offline_runs:
            lines.append(f"  W&B offline run: {offline_runs[-1]} (upload with: wandb sync {offline_runs[-1]})")
        if not scores:
            lines.pop(0)
        if trainer.is_global_zero:
            print("\n".join(lines), flush=True)
