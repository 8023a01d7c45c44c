"""Weights-only snapshots: EMA weights in bf16 safetensors that load_model and `sample` read like a checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import REPO, run_cli
from PIL import Image
from safetensors.torch import load_file

from lightning_gen.checkpoints.loading import load_model
from lightning_gen.checkpoints.snapshots import METADATA_KEY, save_snapshot
from lightning_gen.errors import UserError
from lightning_gen.text.tiny_t5 import build_tiny_t5, shapes_captions


def test_snapshots_hold_the_ema_weights_in_bf16_and_load_as_a_model(tiny_config, tmp_path, one_torch_thread):
    run_cli(
        "fit",
        "--config",
        tiny_config,
        "--trainer.default_root_dir",
        tmp_path,
        "--checkpointing.every_n_steps",
        "3",
        "--snapshots.every_n_steps",
        "3",
        "--snapshots.keep",
        "2",
    )
    checkpoints = tmp_path / "tiny/version_0/checkpoints"
    assert sorted(p.name for p in checkpoints.glob("*.safetensors")) == [
        "snapshot-step0000006.safetensors",
        "snapshot-step0000009.safetensors",
    ]
    full = torch.load(checkpoints / "periodic-step0000009.ckpt", map_location="cpu", weights_only=True)
    snapshot = checkpoints / "snapshot-step0000009.safetensors"

    stored = load_file(snapshot)  # safetensors' own reader accepts the hand-written file
    assert stored.keys() == full["state_dict"].keys()
    for name, ema in full["state_dict"].items():
        expected = ema.to(torch.bfloat16) if ema.is_floating_point() else ema
        assert torch.equal(stored[name], expected), name  # the EMA weights, not the raw ones
    assert any(not torch.equal(full["state_dict"][k], full["current_model_state"][k]) for k in stored)

    model = load_model(snapshot)
    assert type(model).__name__ == "VAE" and not model.training
    for name, value in model.state_dict().items():
        assert value.dtype == full["state_dict"][name].dtype and torch.equal(value, stored[name].to(value.dtype)), name

    parameters = sum(t.numel() for t in full["state_dict"].values())
    assert snapshot.stat().st_size < 2 * parameters + 8192  # 2 bytes a weight plus a header
    assert snapshot.stat().st_size * 6 < (checkpoints / "last.ckpt").stat().st_size


def test_sample_reads_a_snapshot(tiny_config, tmp_path, one_torch_thread):
    run_cli(
        "fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path, "--trainer.max_steps", "2", "--snapshots.every_n_steps", "2"
    )
    snapshot = tmp_path / "tiny/version_0/checkpoints/snapshot-step0000002.safetensors"
    out = tmp_path / "grid.png"
    run_cli("sample", "--ckpt_path", snapshot, "--num", "4", "--out", out, "--nrow", "2", "--device", "cpu")
    grid = Image.open(out)
    assert 2 * 16 <= grid.size[0] < 3 * 16 and grid.size[0] == grid.size[1]  # 2 × 2 images of 16 pixels plus padding
    assert len(set(grid.getdata())) > 10  # samples, not a blank image


def test_a_text_ddpm_snapshot_loads_with_its_text_encoder(tmp_path, one_torch_thread):
    """The Imagen preset's kind of model: hyperparameters (UNet, T5 path) travel in the snapshot's metadata."""
    encoder = build_tiny_t5(tmp_path / "tiny_t5", shapes_captions(), d_model=16)
    unet = {"block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8, "attention_head_dim": 2}
    run_cli(
        "fit",
        "--config",
        REPO / "configs/shapes_text_ddpm.yaml",
        "--trainer.default_root_dir",
        tmp_path,
        "--trainer.max_steps",
        "2",
        "--trainer.accelerator",
        "cpu",
        "--trainer.enable_progress_bar",
        "false",
        "--tracking.logger",
        "csv",
        "--trainer.check_val_every_n_epoch",
        "1000",
        "--trainer.num_sanity_val_steps",
        "0",
        "--model.init_args.unet",
        json.dumps(unet),
        "--model.init_args.text_encoder",
        encoder,
        "--model.init_args.text_cache_dir",
        tmp_path / "text_cache",
        "--data.init_args.image_size",
        "16",
        "--data.init_args.num_images",
        "32",
        "--data.init_args.batch_size",
        "8",
        "--snapshots.every_n_steps",
        "2",
    )
    checkpoints = tmp_path / "shapes_text_ddpm/version_0/checkpoints"
    full = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)
    model = load_model(checkpoints / "snapshot-step0000002.safetensors")
    assert type(model).__name__ == "DDPM" and model.hparams["text_encoder"] == str(encoder)
    for name, value in model.state_dict().items():
        expected = full["state_dict"][name]
        assert torch.equal(value, expected.to(torch.bfloat16).to(value.dtype) if expected.is_floating_point() else expected), name
    images = model.sample(2, condition=model.condition_from_prompt("a large red circle", 2), steps=2)
    assert images.shape == (2, 3, 16, 16) and torch.isfinite(images).all()


def test_a_snapshot_naming_a_class_outside_lightning_gen_is_refused(tmp_path):
    path = tmp_path / "evil.safetensors"
    info = {"model_class": "os.system", "hyper_parameters": {"command": "touch pwned"}, "weights": "ema", "global_step": 0}
    save_snapshot(path, {"w": torch.ones(2)}, torch.bfloat16, {"format": "pt", METADATA_KEY: json.dumps(info)})
    with pytest.raises(UserError, match="names the model class 'os.system', which is not a lightning_gen model"):
        load_model(path)
    assert not (tmp_path / "pwned").exists() and not (REPO / "pwned").exists()


def test_a_mixture_prior_vae_snapshot_keeps_its_fitted_mixture(tiny_config, tmp_path, one_torch_thread):
    """The quickstart's kind of model: the mixture is the latent prior's extra state (a dict of float64 tensors, not a
    weight), written at its own dtype beside the bf16 weights and loaded back, so a snapshot samples like the .ckpt."""
    run_cli(
        "fit",
        "--config",
        tiny_config,
        "--trainer.default_root_dir",
        tmp_path,
        "--model.init_args.prior",
        "gmm",
        "--model.init_args.gmm_components",
        "2",
        "--checkpointing.every_n_steps",
        "7",
        "--snapshots.every_n_steps",
        "7",
    )
    checkpoints = tmp_path / "tiny/version_0/checkpoints"
    # Step 7 comes after the first validation (5 steps an epoch), which fitted the mixture;
    # the periodic .ckpt of that step holds the same one.
    mixture = torch.load(checkpoints / "periodic-step0000007.ckpt", map_location="cpu", weights_only=True)["state_dict"][
        "latent_prior._extra_state"
    ]
    assert mixture["fitted"]
    model = load_model(checkpoints / "snapshot-step0000007.safetensors")
    fitted = model.latent_prior.mixture
    assert fitted is not None and fitted.scale_tril.dtype == torch.float64
    for name in ("weights", "means", "scale_tril"):
        assert torch.equal(getattr(fitted, name), mixture[name]), name
    assert model.sample_latents(3).shape == (3, 8)
