"""Shared fixtures: a tiny VAE-on-shapes config and ways to run the CLI in-process or as a process.

Dataset folders in their real layouts, feature extractors and a counting text encoder live in the ``fixtures_*``
modules beside this file (imported here, so each is one import away for every test module); test modules import
helpers from there, never from one another.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import fixtures_afhq  # noqa: F401
import fixtures_awa2  # noqa: F401
import fixtures_cat_faces  # noqa: F401
import fixtures_celeba  # noqa: F401
import fixtures_features  # noqa: F401
import fixtures_folders  # noqa: F401
import fixtures_image_folder  # noqa: F401
import fixtures_nabirds  # noqa: F401
import fixtures_text  # noqa: F401
import lightning.pytorch as pl
import pytest
import torch
import yaml

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]

TINY_CONFIG = {
    "seed_everything": 7,
    "trainer": {
        "max_epochs": 2,
        "accelerator": "cpu",
        "devices": 1,
        "log_every_n_steps": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    },
    "model": {
        "class_path": "lightning_gen.models.VAE",
        "init_args": {
            "channels": [8, 16],
            "latent_dim": 8,
            "kl_weight": 0.1,
            "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.003}},
        },
    },
    "data": {
        "class_path": "lightning_gen.data.ShapesDataModule",
        "init_args": {"num_images": 96, "image_size": 16, "batch_size": 16, "hflip": True, "max_rotation_degrees": 10},
    },
    "tracking": {"logger": "csv"},
    "images": {"num_images": 4, "interpolation_pairs": 2, "interpolation_steps": 3},
}


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_CONFIG))
    return path


@pytest.fixture
def lightning_log():
    """The lines Lightning's rank_zero_info writes (its logger does not propagate to pytest's caplog)."""
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("lightning.pytorch")
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run faster on one thread than on two cores shared with other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_cli(*args: str) -> None:
    from lightning_gen.cli import main

    main([str(a) for a in args])


def process_env() -> dict[str, str]:
    """The environment of a fresh shell: wandb exports its service address to child processes, and a
    child killed by a test would otherwise leave its run id registered in this process's service."""
    return {key: value for key, value in os.environ.items() if key != "WANDB_SERVICE"}


def run_process(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lightning_gen", *map(str, args)],
        cwd=cwd or REPO,
        env=process_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def save_checkpoint(model, path: Path, **entries) -> Path:
    """A checkpoint as Lightning writes it, holding what load_model reads (plus any extra top-level entries)."""
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), **entries}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


def write_vae_run(root: Path, data: dict) -> Path:
    """A tiny VAE's checkpoint inside a run directory (``<run>/checkpoints/last.ckpt`` beside ``<run>/config.yaml``
    whose data is ``data``); returns the checkpoint's path."""
    from lightning_gen.data import ShapesDataModule
    from lightning_gen.models import VAE

    run = root / "tiny" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    torch.manual_seed(0)
    model = VAE(ShapesDataModule(image_size=16).facts, channels=(8, 16), latent_dim=4)
    (run / "config.yaml").write_text(yaml.safe_dump({"data": data, "tracking": {"logger": "csv"}}))
    return save_checkpoint(model, run / "checkpoints" / "last.ckpt")


class SimulatedKill(Exception):
    pass


class KillAtStep(pl.Callback):
    """Listed in trainer.callbacks by class path: stops a run abruptly before the given step, like a dead runtime."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise SimulatedKill(f"killed at step {self.step}")
