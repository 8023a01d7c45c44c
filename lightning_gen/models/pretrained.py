"""Start a DDPM from a diffusers checkpoint (``model.init_args.pretrained``): its UNet weights and its noise schedule.

The source is a Hub id (``google/ddpm-cat-256``) or a local folder: a pipeline folder (``unet/``, ``scheduler/``,
as ``DDPMPipeline.save_pretrained`` writes it) or a bare ``UNet2DModel`` folder (``config.json`` + weights; the
config's own schedule settings are kept then). Hub ids are read from the Hugging Face cache only
(``local_files_only``): nothing is downloaded unless ``LIGHTNING_GEN_ALLOW_DOWNLOADS=1``.

Resolution: a UNet2DModel is convolutional, so data of another size than the UNet's ``sample_size`` is accepted
with a warning when the UNet's down-sampling divides it (its features were tuned to the size it was trained at),
and refused in one sentence otherwise. The UNet's ``sample_size`` is then set to the data's, so a published
pipeline samples at the size it was fine-tuned at.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffusers import DDPMScheduler, UNet2DModel
from huggingface_hub import constants
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts

ALLOW_DOWNLOADS = "LIGHTNING_GEN_ALLOW_DOWNLOADS"
UNET_FOLDER, SCHEDULER_FOLDER = "unet", "scheduler"
BETA_SCHEDULES = {"linear": "linear", "squaredcos_cap_v2": "cosine"}  # diffusers' name → DDPM's beta_schedule
DEFAULT_LINEAR_BETAS = (0.0001, 0.02)  # the range DDPM's linear schedule uses (diffusers' defaults)


@dataclass(frozen=True)
class PretrainedDiffusion:
    """What a diffusers checkpoint gives a DDPM: the UNet and the DDPM settings of its noise schedule."""

    unet: UNet2DModel
    schedule: dict[str, Any]  # num_train_timesteps, beta_schedule, prediction_type, dynamic_threshold_percentile (or {})


def downloads_allowed() -> bool:
    return os.environ.get(ALLOW_DOWNLOADS, "").strip().lower() in ("1", "true", "yes")


def is_hub_id(source: str) -> bool:
    """``owner/name`` that is not an existing path: what the Hub would be asked for."""
    return not Path(source).expanduser().exists() and source.count("/") == 1 and not source.startswith((".", "/", "~"))


def unet_location(source: str) -> tuple[str, str | None]:
    """(folder or Hub id, subfolder) of the source's UNet, as ``UNet2DModel.from_pretrained`` takes them."""
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / UNET_FOLDER / "config.json").is_file():
            return str(path), UNET_FOLDER
        if (path / "config.json").is_file():
            return str(path), None
        raise UserError(
            f"model.pretrained {source} is a folder without unet/config.json (a diffusers pipeline) or config.json (a bare UNet); "
            "point it at a folder written by save_pretrained."
        )
    if not is_hub_id(source):
        raise UserError(f"model.pretrained {source} is not a folder here nor a Hub id (owner/name); fix the path or the id.")
    return source, UNET_FOLDER


def _not_available(source: str, error: BaseException) -> UserError:
    if not is_hub_id(source):
        return UserError(f"could not read the UNet of model.pretrained {source} ({str(error).splitlines()[0]}); check the folder.")
    if downloads_allowed():
        how = "check the network and the id, or download it elsewhere and copy the folder here"
    else:
        how = f"run `hf download {source}` on a machine with network (or set {ALLOW_DOWNLOADS}=1 to let fit download it)"
    return UserError(
        f"model.pretrained {source} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}); "
        f"{how}, or point model.pretrained at a local diffusers folder."
    )


def _read_unet_config(source: str) -> tuple[dict[str, Any], str, str | None]:
    root, subfolder = unet_location(source)
    local_only = not downloads_allowed()
    candidates = [subfolder, None] if subfolder and is_hub_id(source) else [subfolder]  # a Hub repo may hold a bare UNet
    error: BaseException | None = None
    for candidate in candidates:
        try:
            return UNet2DModel.load_config(root, subfolder=candidate, local_files_only=local_only), root, candidate
        except (OSError, ValueError) as failure:  # diffusers raises EnvironmentError for a file not found or not cached
            error = failure
    raise _not_available(source, error) from error


def _read_scheduler_config(root: str, subfolder: str | None) -> dict[str, Any] | None:
    """The pipeline's scheduler settings; None for a bare UNet (no scheduler beside it)."""
    if subfolder is None:
        return None
    try:
        return DDPMScheduler.load_config(root, subfolder=SCHEDULER_FOLDER, local_files_only=not downloads_allowed())
    except (OSError, ValueError):
        return None


def schedule_settings(config: dict[str, Any], source: str) -> dict[str, Any]:
    """The DDPM settings (num_train_timesteps, beta_schedule, prediction_type, clipping) of a diffusers scheduler config."""
    where = f"the scheduler of model.pretrained {source}"
    if config.get("trained_betas") is not None:
        raise UserError(
            f"{where} uses trained_betas, which DDPM cannot reproduce; fine-tune a checkpoint with a linear or cosine schedule."
        )
    beta = config.get("beta_schedule", "linear")
    if beta not in BETA_SCHEDULES:
        raise UserError(f"{where} uses beta_schedule {beta}; DDPM fine-tunes checkpoints with {' or '.join(BETA_SCHEDULES)} betas.")
    betas = (float(config.get("beta_start", DEFAULT_LINEAR_BETAS[0])), float(config.get("beta_end", DEFAULT_LINEAR_BETAS[1])))
    if beta == "linear" and betas != DEFAULT_LINEAR_BETAS:
        raise UserError(
            f"{where} has linear betas {betas[0]}..{betas[1]}; DDPM's linear schedule is 0.0001..0.02, so it cannot continue it."
        )
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in ("epsilon", "v_prediction"):
        raise UserError(f"{where} predicts {prediction}; DDPM fine-tunes epsilon or v_prediction checkpoints.")
    # DDPM clips x0 to [-1, 1] or thresholds it dynamically; a scheduler without either is sampled with clipping.
    percentile = float(config.get("dynamic_thresholding_ratio", 0.995)) if config.get("thresholding") else None
    return {
        "num_train_timesteps": int(config.get("num_train_timesteps", 1000)),
        "beta_schedule": BETA_SCHEDULES[beta],
        "prediction_type": prediction,
        "dynamic_threshold_percentile": percentile,
    }


def check_data_facts(config: dict[str, Any], facts: DataFacts, source: str) -> None:
    """One sentence when the data cannot feed the pretrained UNet; a warning when only the size differs."""
    channels = config.get("in_channels", 3)
    if channels != facts.channels or config.get("out_channels", channels) != facts.channels:
        raise UserError(
            f"model.pretrained {source} takes {channels}-channel images but the data has {facts.channels}; "
            f"use {channels}-channel data (e.g. RGB images for an RGB checkpoint) or another checkpoint."
        )
    size = config.get("sample_size")
    size = size[0] if isinstance(size, (list, tuple)) else size
    if size is None or facts.image_size == size:
        return
    halvings = len(config.get("block_out_channels", ())) - 1
    if facts.image_size % 2**halvings:
        raise UserError(
            f"data.image_size {facts.image_size} does not fit model.pretrained {source}, a {size}×{size} UNet that halves "
            f"the image {halvings} times; set data.init_args.image_size to {size} (its own size) or a multiple of {2**halvings}."
        )
    rank_zero_warn(
        f"model.pretrained {source} was trained at {size}×{size} and is fine-tuned here at {facts.image_size}×{facts.image_size}: "
        f"its convolutions run at any size, but its features are tuned to {size}×{size} (set data.init_args.image_size {size} to match)."
    )


def pretrained_diffusion(source: str, facts: DataFacts, conditioning: str) -> PretrainedDiffusion:
    """The UNet (weights loaded) and schedule settings of ``source``, checked against the data."""
    if conditioning != "none":
        raise UserError(
            f"model.pretrained starts an unconditional DDPM from a diffusers UNet2DModel, but model.conditioning is {conditioning}; "
            "set model.conditioning to none (class or text fine-tuning from a pretrained UNet is not supported)."
        )
    config, root, subfolder = _read_unet_config(source)
    if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise UserError(
            f"model.pretrained {source} holds a {config['_class_name']}, not a pixel-space UNet2DModel; "
            "use an unconditional DDPM checkpoint such as google/ddpm-cat-256."
        )
    check_data_facts(config, facts, source)
    try:
        unet = UNet2DModel.from_pretrained(root, subfolder=subfolder, local_files_only=not downloads_allowed())
    except (OSError, ValueError) as error:
        raise _not_available(source, error) from error
    unet.register_to_config(sample_size=facts.image_size)  # the size it is fine-tuned (and will be published) at
    unet.train()  # from_pretrained returns it in eval mode; a UNet built here starts in train mode (dropout on), as this one must
    scheduler = _read_scheduler_config(root, subfolder)
    schedule = {} if scheduler is None else schedule_settings(scheduler, source)
    parameters = sum(parameter.numel() for parameter in unet.parameters()) / 1e6
    if schedule:
        kind = "clip" if schedule["dynamic_threshold_percentile"] is None else "dynamic thresholding"
        what = (
            f"noise schedule ({schedule['beta_schedule']} betas, {schedule['num_train_timesteps']} steps, {schedule['prediction_type']}, "
            f"{kind}) from it; the config's model.unet, prediction_type, beta_schedule, num_train_timesteps and "
            "dynamic_threshold_percentile are not used"
        )
    else:
        what = "no scheduler beside it, so the config's schedule settings stay; the config's model.unet is not used"
    rank_zero_info(f"model.pretrained {source}: UNet ({parameters:.1f}M parameters) and {what}.")
    return PretrainedDiffusion(unet, schedule)
