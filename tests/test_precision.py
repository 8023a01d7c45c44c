"""Mixed precision for every model kind: bf16-mixed on CPU against fp32, and the GradScaler of 16-mixed with EMA and checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from fixtures_precision import PoisonBatch, datamodule, overflowing_scaler, trainer
from lightning.pytorch.plugins.precision import MixedPrecision

from lightning_gen.callbacks.ema import EMA
from lightning_gen.callbacks.nonfinite_guard import NonFiniteGuard
from lightning_gen.compat import averaged_model
from lightning_gen.models import CVAE, DDPM, VAE
from lightning_gen.text.tiny_t5 import build_tiny_t5, shapes_captions

TINY_UNET = {"block_out_channels": [8, 16], "norm_num_groups": 4}
# bf16 keeps 8 bits of mantissa. Measured relative differences of the step-0 loss, bf16-mixed against fp32: VAE 1.8e-4,
# CVAE 4.6e-5, DDPM 2.4e-4, text DDPM 5.2e-4; the tolerance leaves ten times the largest. Another batch or other diffusion
# noise (what a wrongly seeded or wrongly cast step would give) moves the loss by per cents.
BF16_RELATIVE_TOLERANCE = 5e-3


def build(kind: str, tmp_path: Path) -> pl.LightningModule:
    facts = datamodule().facts
    if kind == "vae":
        return VAE(facts, channels=[8, 16], latent_dim=8)
    if kind == "cvae":
        return CVAE(facts, channels=[8, 16], latent_dim=8, condition="class")
    if kind == "ddpm":
        return DDPM(facts, conditioning="class", unet={**TINY_UNET, "attention_head_dim": 8})
    encoder = build_tiny_t5(tmp_path / "t5", shapes_captions(), d_model=16, num_heads=2)
    unet = {**TINY_UNET, "attention_head_dim": 2}
    return DDPM(facts, conditioning="text", text_encoder=str(encoder), text_cache_dir=str(tmp_path / "text"), max_text_length=8, unet=unet)


class Losses(pl.Callback):
    def __init__(self):
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def fit_losses(kind: str, precision: str, tmp_path: Path) -> list[float]:
    pl.seed_everything(0)  # same weights, same first batch, same training noise for both precisions
    model = build(kind, tmp_path)
    losses = Losses()
    trainer(precision, callbacks=[losses]).fit(model, datamodule())
    return losses.losses


@pytest.mark.parametrize("kind", ["vae", "cvae", "ddpm", "text_ddpm"])
def test_bf16_mixed_trains_every_model_kind_and_its_first_loss_matches_fp32(kind, tmp_path, one_torch_thread):
    fp32 = fit_losses(kind, "32-true", tmp_path)
    bf16 = fit_losses(kind, "bf16-mixed", tmp_path)
    assert len(bf16) == len(fp32) == 3
    assert all(math.isfinite(loss) for loss in bf16)
    assert bf16[0] == pytest.approx(fp32[0], rel=BF16_RELATIVE_TOLERANCE)
    assert bf16[0] != fp32[0]  # bf16 did run: the rounding shows


class Weights(pl.Callback):
    """The weights after every optimizer step, and whether the step changed them (the independent record of an update)."""

    def __init__(self):
        self.updated: list[list[torch.Tensor]] = []
        self.skipped = 0
        self._previous = None

    def on_train_start(self, trainer, pl_module):
        self._previous = [p.detach().clone() for p in pl_module.parameters()]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        current = [p.detach().clone() for p in pl_module.parameters()]
        if all(torch.equal(a, b) for a, b in zip(current, self._previous, strict=True)):
            self.skipped += 1
        else:
            self.updated.append(current)
        self._previous = current


@pytest.mark.parametrize("skipping", ["grad scaler overflow", "non-finite batch"])
def test_a_skipped_optimizer_step_is_not_averaged_into_the_ema(skipping, tmp_path, one_torch_thread):
    pl.seed_everything(0)
    model = VAE(datamodule().facts, channels=[8, 16], latent_dim=8)
    weights, decay = Weights(), 0.5
    ema = EMA(decay=decay, warmup=False)
    callbacks = [NonFiniteGuard(max_consecutive=5), ema, weights]
    if skipping == "grad scaler overflow":
        run = trainer(plugins=[overflowing_scaler()], steps=6, callbacks=callbacks)
    else:
        run = trainer("32-true", steps=6, callbacks=[PoisonBatch(step=2), *callbacks])
    run.fit(model, datamodule())
    assert weights.skipped >= 1 and len(weights.updated) >= 2  # the scenario happened: some steps skipped, some trained
    average = averaged_model(ema)
    assert int(average.n_averaged) == len(weights.updated)
    expected = weights.updated[0]  # the first update copies; each later one is a lerp with the weights it produced
    for current in weights.updated[1:]:
        expected = [torch.lerp(a, c, 1.0 - decay) for a, c in zip(expected, current, strict=True)]
    # After fit, Lightning's WeightAveraging swapped the average into the model (its on_train_end).
    for got, want in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(got.detach(), want)


class ScaleAtStart(pl.Callback):
    def on_train_start(self, trainer, pl_module):
        self.scale = trainer.precision_plugin.scaler.get_scale()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="16-mixed uses a GradScaler only on CUDA (Lightning runs bf16-mixed on CPU)")
def test_16_mixed_checkpoints_the_grad_scaler_and_resume_restores_it(tmp_path):
    def cuda_trainer(steps: int, scaler: torch.amp.GradScaler | None, callbacks=()) -> pl.Trainer:
        return pl.Trainer(
            accelerator="cuda", devices=1, max_steps=steps, plugins=[MixedPrecision("16-mixed", "cuda", scaler)],
            callbacks=[EMA(decay=0.9), NonFiniteGuard(), *callbacks], logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
        )  # fmt: skip

    pl.seed_everything(0)
    # A scale that grows every step: after the run it differs from both its start and a fresh scaler's 65536.
    first = cuda_trainer(3, torch.amp.GradScaler("cuda", init_scale=2.0**10, growth_interval=1))
    first.fit(VAE(datamodule().facts, channels=[8, 16], latent_dim=8), datamodule())
    scale = first.precision_plugin.scaler.get_scale()
    assert scale not in (2.0**10, 2.0**16)
    path = tmp_path / "scaler.ckpt"
    first.save_checkpoint(path)
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert saved["MixedPrecision"]["scale"] == scale

    start = ScaleAtStart()
    resumed = cuda_trainer(4, torch.amp.GradScaler("cuda"), callbacks=[start])
    resumed.fit(VAE(datamodule().facts, channels=[8, 16], latent_dim=8), datamodule(), ckpt_path=path)
    assert start.scale == scale
