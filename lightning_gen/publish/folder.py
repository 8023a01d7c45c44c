"""``publish``: a checkpoint → a folder other libraries load (diffusers pipeline or AutoencoderKL, huggingface_hub mixin) + its card.

The folder is built beside ``out`` under a temporary name and renamed into place when complete, so an
interrupted publish never leaves a half-written model where a loader (or ``--push_to_hub``) would take it.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL
from torchvision.utils import save_image

from lightning_gen.checkpoints.loading import load_checkpoint_file, load_model
from lightning_gen.errors import UserError
from lightning_gen.models.autoencoder import Autoencoder
from lightning_gen.models.ddpm import DDPM
from lightning_gen.models.vae import VAE
from lightning_gen.protocol import Generator, has_vocabulary
from lightning_gen.publish.autoencoder_export import AutoencoderExport, export_autoencoder
from lightning_gen.publish.hub import push_folder
from lightning_gen.publish.lora_export import base_model_id, export_diffusion
from lightning_gen.publish.model_card import SAMPLE_GRID, CardFacts, model_card
from lightning_gen.publish.pipelines import PipelineExport
from lightning_gen.publish.run_facts import run_facts
from lightning_gen.publish.vae_export import export_vae

AUTOENCODER_GRID_NOTE = (
    " An autoencoder alone is no generator: these decode N(0, I) / scale latents and show what its latent space holds,"
    " not samples of the data (latent diffusion adds the prior)."
)
RAW_WEIGHTS_KEY = "current_model_state"  # where Lightning's WeightAveraging keeps the raw weights beside the EMA ones


@dataclass(frozen=True)
class PublishRequest:
    ckpt_path: str
    out: str
    raw_weights: bool = False
    overwrite: bool = False
    push_to_hub: str | None = None
    private: bool = False
    license: str | None = None
    datasets: tuple[str, ...] = ()
    prompt: str | None = None
    num_images: int = 16
    seed: int = 0
    device: str = "cpu"
    merge_lora: bool = False  # a LoRA run: the adapter folded into the UNet (a stock pipeline) instead of the adapter alone


def load_weights(request: PublishRequest) -> tuple[Generator, str]:
    """The checkpoint's model with the EMA weights (the raw ones with ``raw_weights``), and which ones it holds."""
    model = load_model(request.ckpt_path, request.device)
    raw = load_checkpoint_file(request.ckpt_path, mmap=True).get(RAW_WEIGHTS_KEY)
    if not request.raw_weights:
        return model, "EMA" if raw is not None else "raw (the run had no EMA)"
    if raw is None:
        raise UserError(
            f"--raw_weights was asked but {request.ckpt_path} holds only one set of weights (the run had no EMA); drop --raw_weights."
        )
    model.load_state_dict(raw)
    return model.eval(), "raw"


def first_stage(model: DDPM) -> tuple[AutoencoderKL | None, float | None]:
    """The (AutoencoderKL, latent scale) a latent diffusion model decodes its samples with; (None, None) for a pixel DDPM.

    The hook for ``LatentDiffusion`` (models/latent_diffusion.py, a DDPM subclass whose ``sample`` returns
    ``autoencoder.decode(latents / scale)``): it returns ``(model.autoencoder.vae, model.scale)`` here, and the
    pipeline gets ``vae/`` with that ``scaling_factor`` (``export_ddpm(..., vae=, scaling_factor=)``)."""
    from lightning_gen.models.latent_diffusion import LatentDiffusion

    if isinstance(model, LatentDiffusion):
        return model.autoencoder.vae, model.scale
    return None, None


def grid_condition(model: Generator, n: int, prompt: str | None) -> tuple[Any, str]:
    if prompt is not None:
        return model.condition_from_prompt(prompt, n), f'prompt "{prompt}"'
    if has_vocabulary(model):
        condition = model.spread_conditions(n)
        return condition, "conditions " + ", ".join(dict.fromkeys(model.condition_names(condition)))
    return None, "no condition" if model.conditioning == "none" else "the null condition (pass --prompt for captions)"


def write_sample_grid(model: Generator, folder: Path, request: PublishRequest) -> str:
    condition, what = grid_condition(model, request.num_images, request.prompt)
    generator = torch.Generator(device=request.device).manual_seed(request.seed)
    with torch.no_grad():
        images = model.sample(request.num_images, condition=condition, generator=generator)
    save_image(images.float().cpu(), folder / SAMPLE_GRID, nrow=math.ceil(math.sqrt(request.num_images)), padding=1)
    return f"{request.num_images} samples from `lightning_gen sample` defaults, seed {request.seed}, {what}."


def publish(request: PublishRequest) -> Path:
    out = Path(request.out)
    if out.exists() and any(out.iterdir()) and not request.overwrite:
        raise UserError(f"--out {out} already holds files; choose an empty or new folder, or pass --overwrite to replace it.")
    model, weights = load_weights(request)
    if not isinstance(model, (DDPM, VAE, Autoencoder)):
        raise UserError(
            f"publish exports DDPM, VAE, BetaVAE, CVAE and Autoencoder checkpoints; {request.ckpt_path} holds a {type(model).__name__}."
        )
    staging = out.parent / f".{out.name}.publishing-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        export: PipelineExport | AutoencoderExport | None = None
        if isinstance(model, DDPM):
            vae, scaling_factor = first_stage(model)
            export = export_diffusion(model, staging, request.merge_lora, vae, scaling_factor)
        elif isinstance(model, Autoencoder):
            export = export_autoencoder(model, staging)
        else:
            export_vae(model, staging)
        run = run_facts(request.ckpt_path)
        facts = CardFacts(
            model_class=f"{type(model).__module__}.{type(model).__qualname__}",
            conditioning=model.conditioning,
            data_facts=model.data_facts,
            parameters=sum(parameter.numel() for parameter in model.parameters()),
            location=request.push_to_hub or str(out.resolve()),
            weights=weights,
            license=request.license,
            datasets=request.datasets,
            base_model=base_model_id(model) if isinstance(model, DDPM) else None,
            grid_caption=write_sample_grid(model, staging, request) + (AUTOENCODER_GRID_NOTE if isinstance(model, Autoencoder) else ""),
        )
        model_card(facts, run, export).save(staging / "README.md")
        if run.config_text:
            (staging / "training_config.yaml").write_text(run.config_text)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def publish_and_push(request: PublishRequest) -> tuple[Path, str | None]:
    out = publish(request)
    url = push_folder(out, request.push_to_hub, request.private) if request.push_to_hub else None
    return out, url
