"""What the publish tests share: tiny trained models, a run directory around a checkpoint, lightning_gen's own
sampling for comparison, and running a model card's snippet in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from conftest import process_env, save_checkpoint

from lightning_gen.checkpoints.loading import load_model
from lightning_gen.facts import DataFacts
from lightning_gen.models import DDPM, Autoencoder
from lightning_gen.publish.model_card import snippet_of

CLASSES = ("circle", "square", "triangle")
STEPS, SEED, TOLERANCE = 4, 3, 1e-4


def train_briefly(model: torch.nn.Module, batch: dict) -> None:
    """Two Adam steps: weights that a run changed, not the initialisation."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(2):
        optimizer.zero_grad()
        loss = (
            model.diffusion_loss(batch, torch.Generator().manual_seed(step))
            if isinstance(model, DDPM)
            else model.losses(batch, True)["loss"]
        )
        loss.backward()
        optimizer.step()


def write_run(root: Path, model: torch.nn.Module, ema: bool = True, scores: list | None = None) -> Path:
    """``<root>/<exp>/version_0/checkpoints/last.ckpt`` with config.yaml (and evaluate's scores) beside it.
    With ``ema`` the state_dict holds the weights exported by default and ``current_model_state`` other, raw ones."""
    run = root / "exp" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    config = {"model": {"class_path": f"lightning_gen.models.{type(model).__name__}"}, "trainer": {"accelerator": "cpu", "devices": 1}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    if scores:
        (run / "evaluation").mkdir()
        (run / "evaluation" / "scores-seed0-val.json").write_text(json.dumps({"scores": scores}))
    entries = {"global_step": 2, "epoch": 0}
    if ema:
        raw = {
            key: value + 0.01 * torch.randn_like(value) if value.is_floating_point() else value for key, value in model.state_dict().items()
        }
        entries["current_model_state"] = raw
    return save_checkpoint(model, run / "checkpoints" / "last.ckpt", **entries)


def lightning_gen_sample(ckpt: Path, n: int, condition=None, **options) -> torch.Tensor:
    """What `lightning_gen sample --seed SEED` draws: the checkpoint's model, a CPU generator seeded SEED."""
    model = load_model(ckpt, "cpu")
    return model.sample(n, condition=condition, generator=torch.Generator("cpu").manual_seed(SEED), **options)


def run_snippet(readme: Path, cwd: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", snippet_of(readme)], cwd=cwd, env=process_env(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]


def tiny_autoencoder() -> Autoencoder:
    torch.manual_seed(0)
    model = Autoencoder(DataFacts(image_size=16, channels=3), block_out_channels=(8, 16), latent_channels=4, downsampling_factor=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    for _ in range(2):  # weights a run changed, not the initialisation
        optimizer.zero_grad()
        model.losses(batch, sample_latent=False)["loss"].backward()
        optimizer.step()
    model.eval()
    model.observe(torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(2)), torch.arange(8))
    model.update_latent_scale()  # what validation records: 1 / std of these images' posterior means
    return model
