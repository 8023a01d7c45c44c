"""A lightning_gen DDPM as a diffusers pipeline folder that stock diffusers loads.

- unconditional → ``DDIMPipeline`` (``DDPMPipeline`` for a model whose sampler is ``ddpm``), loadable with
  ``DDIMPipeline.from_pretrained(folder)`` / ``DiffusionPipeline.from_pretrained(folder)``; a flow-matching model →
  ``DDPMPipeline`` with its ``FlowMatchEulerDiscreteScheduler`` / ``FlowMatchHeunDiscreteScheduler`` (the installed
  diffusers has no flow pipeline for a ``UNet2DModel``; ``DDPMPipeline``'s loop — noise, ``unet(x, t)``,
  ``scheduler.step`` — is exactly the flow sampler's);
- class- or text-conditional → ``pipeline.py`` (``shipped/pipeline.py``, classifier-free guidance) in the folder,
  loadable with ``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)``; a text model also gets its
  T5 encoder and tokenizer (``text_encoder/``, ``tokenizer/``) and its learned null caption (``null_text/``);
- with a ``vae`` (a latent diffusion model: the UNet works on ``scaling_factor`` × the autoencoder's latents) →
  the shipped pipeline for every conditioning, with ``vae/`` (a stock ``AutoencoderKL``) decoding
  ``latents / vae.config.scaling_factor`` at the end.

The folder holds the UNet and the scheduler settings the model samples with (betas, prediction type, trailing
timesteps, dynamic thresholding or clipping; the flow scheduler of a flow-matching model), so the pipeline's images
equal ``DDPM.sample``'s for the same seed, steps and guidance scale.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler

from lightning_gen.models.ddpm import DDPM
from lightning_gen.publish.autoencoder_export import autoencoder_kl
from lightning_gen.publish.shipped import null_text as shipped_null_text
from lightning_gen.publish.shipped import pipeline as shipped_pipeline
from lightning_gen.text import FrozenT5

SHIPPED = Path(shipped_pipeline.__file__).parent
CONDITIONAL_PIPELINE = "LightningGenConditionalPipeline"
# JSON has no infinity: a float32-max cap of the dynamic threshold is the same "no cap" (diffusers clamps s to it).
NO_THRESHOLD_CAP = float(torch.finfo(torch.float32).max)


@dataclass(frozen=True)
class PipelineExport:
    """What was written: the pipeline class a user loads and how (for the model card's snippet)."""

    folder: Path
    pipeline_class: str  # DDIMPipeline, DDPMPipeline or the shipped pipeline (conditional or latent)
    conditioning: str
    sampler: str
    steps: int
    guidance_scale: float
    class_names: tuple[str, ...]
    base_unet: tuple[str, str | None] | None = None  # (folder or Hub id, subfolder) of the base UNet of a LoRA adapter
    objective: str = "diffusion"  # or flow_matching
    latent: bool = False  # a vae/ decodes the UNet's latents


def scheduler_config(model: DDPM) -> dict[str, Any]:
    config = dict(model.schedule_config())
    if config.get("sample_max_value") == float("inf"):
        config["sample_max_value"] = NO_THRESHOLD_CAP
    return config


def is_flow(model: DDPM) -> bool:
    return model.objective == "flow_matching"


def export_scheduler(model: DDPM) -> Any:
    """The scheduler ``sample`` steps with its default sampler (DDIM, DDPM, flow Euler or flow Heun)."""
    if is_flow(model):
        return model.sampling_scheduler(model.sampler)
    return (DDIMScheduler if model.sampler == "ddim" else DDPMScheduler)(**scheduler_config(model))


def _exported_unet(model: DDPM) -> torch.nn.Module:
    return copy.deepcopy(model.unet).float().cpu().eval()


def export_ddpm(
    model: DDPM,
    folder: str | Path,
    unet: torch.nn.Module | None = None,
    vae: AutoencoderKL | None = None,
    scaling_factor: float | None = None,
) -> PipelineExport:
    """Writes ``model`` (with the weights it holds now: EMA or raw, as loaded) as a diffusers pipeline into ``folder``;
    ``unet`` (a copy, e.g. with a LoRA adapter merged) replaces the model's own UNet in it.

    ``vae`` (a latent model's first stage) becomes the pipeline's ``vae/``, with ``scaling_factor`` (the latent
    scale: the UNet sees ``scaling_factor`` × the posterior means) in its config; None keeps the one it records."""
    folder = Path(folder)
    scheduler = export_scheduler(model)
    unet = _exported_unet(model) if unet is None else unet.float().cpu().eval()
    if vae is not None:
        vae = autoencoder_kl(vae, vae.config.scaling_factor if scaling_factor is None else scaling_factor)
    if model.conditioning == "none" and vae is None:
        pipeline_class = DDIMPipeline if model.sampler == "ddim" else DDPMPipeline
        pipeline_class(unet=unet, scheduler=scheduler).save_pretrained(folder, safe_serialization=True)
        name = pipeline_class.__name__
    else:
        _save_shipped(model, unet, scheduler, vae, folder)
        name = CONDITIONAL_PIPELINE
    return PipelineExport(
        folder, name, model.conditioning, model.sampler, model.sampling_steps, model.guidance_scale, model.condition_vocabulary,
        objective=model.objective, latent=vae is not None,
    )  # fmt: skip


def _save_shipped(model: DDPM, unet: torch.nn.Module, scheduler: Any, vae: AutoencoderKL | None, folder: Path) -> None:
    components: dict[str, Any] = {} if vae is None else {"vae": vae}
    settings: dict[str, Any] = {
        "conditioning": model.conditioning,
        "default_guidance_scale": float(model.guidance_scale),
        "default_num_inference_steps": int(model.sampling_steps),
    }
    if model.conditioning == "class":
        # A dict, as DiTPipeline's id2label: diffusers reads a list-valued model_index entry as a component.
        settings["id2label"] = {str(index): name for index, name in enumerate(model.condition_vocabulary)}
    elif model.conditioning == "text":
        encoder = FrozenT5(model.hparams["text_encoder"])
        null = model.null_text_embedding.detach().float().cpu()
        null_text = shipped_null_text.NullTextEmbedding(max_length=null.shape[0], width=null.shape[1])
        null_text.embedding.data.copy_(null)
        components.update(text_encoder=encoder.model, tokenizer=encoder.tokenizer, null_text=null_text)
        settings["max_text_length"] = int(model.hparams["max_text_length"])
    pipeline = shipped_pipeline.LightningGenConditionalPipeline(unet=unet, scheduler=scheduler, **components, **settings)
    pipeline.save_pretrained(folder, safe_serialization=True)
    # The saved index names the classes by lightning_gen's module paths; a user's diffusers finds them in the files
    # shipped beside the weights instead (the pipeline at the top, the null caption in its component folder).
    shutil.copy(SHIPPED / "pipeline.py", folder / "pipeline.py")
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    index["_class_name"] = ["pipeline", CONDITIONAL_PIPELINE]
    if model.conditioning == "text":
        shutil.copy(SHIPPED / "null_text.py", folder / "null_text" / "null_text.py")
        index["null_text"] = ["null_text", "NullTextEmbedding"]
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
