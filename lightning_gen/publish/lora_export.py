"""A LoRA-fine-tuned DDPM leaves as its adapter alone (peft's folder + the scheduler it samples with) or merged.

Adapter alone (the default): ``adapter_config.json`` + ``adapter_model.safetensors`` at the top of the folder, which
``PeftModel.from_pretrained(base_unet, folder)`` applies to the base UNet (the installed diffusers has no
``load_adapter``/``load_lora_weights`` on ``UNet2DModel``), and ``scheduler/`` with the settings ``sample`` uses.
``--merge_lora``: the adapter folded into the UNet's weights, written as the usual stock diffusers pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path

from diffusers import AutoencoderKL

from lightning_gen.errors import UserError
from lightning_gen.models.ddpm import DDPM
from lightning_gen.models.lora import has_lora, merged_unet, save_adapter
from lightning_gen.models.pretrained import is_hub_id, unet_location
from lightning_gen.publish.pipelines import PipelineExport, export_ddpm, export_scheduler

LORA_ADAPTER = "LoRA adapter"  # PipelineExport.pipeline_class of an adapter-only folder


def base_model_id(model: DDPM) -> str | None:
    """The Hub id the model was fine-tuned from (the card's ``base_model``); None for a local folder or from scratch."""
    source = model.hparams.get("pretrained")
    return source if source and is_hub_id(source) else None


def export_diffusion(
    model: DDPM, folder: str | Path, merge_lora: bool = False, vae: AutoencoderKL | None = None, scaling_factor: float | None = None
) -> PipelineExport:
    """``model`` as a diffusers pipeline, or (LoRA without ``merge_lora``) as its adapter for the base UNet;
    ``vae``/``scaling_factor``: a latent model's first stage (see ``export_ddpm``)."""
    folder = Path(folder)
    lora = has_lora(model.unet)
    if merge_lora and not lora:
        raise UserError("--merge_lora was asked but the checkpoint has no LoRA adapter (model.lora was not set); drop --merge_lora.")
    if merge_lora:
        return export_ddpm(model, folder, unet=merged_unet(model.unet), vae=vae, scaling_factor=scaling_factor)
    if not lora:
        return export_ddpm(model, folder, vae=vae, scaling_factor=scaling_factor)
    source = model.hparams.get("pretrained")
    if source is None:
        raise UserError(
            "this LoRA run started from a random UNet (model.pretrained was not set), so its adapter has no base to load onto; "
            "publish it with --merge_lora."
        )
    save_adapter(model.unet, folder, base_model=source)
    export_scheduler(model).save_pretrained(folder / "scheduler")
    return PipelineExport(
        folder, LORA_ADAPTER, model.conditioning, model.sampler, model.sampling_steps, model.guidance_scale, (), unet_location(source)
    )


def adapter_snippet(location: str, pipeline: PipelineExport, image_size: int) -> str:
    """Python that applies the published adapter to its base UNet and samples like ``lightning_gen sample``."""
    root, subfolder = pipeline.base_unet
    scheduler, pipe = ("DDIMScheduler", "DDIMPipeline") if pipeline.sampler == "ddim" else ("DDPMScheduler", "DDPMPipeline")
    options = ", eta=0.0, use_clipped_model_output=True" if pipeline.sampler == "ddim" else ""
    where = json.dumps(location)
    load_base = f"UNet2DModel.from_pretrained({json.dumps(root)}" + (f", subfolder={json.dumps(subfolder)})" if subfolder else ")")
    return "\n".join([
        "import torch",
        f"from diffusers import {pipe}, {scheduler}, UNet2DModel",
        "from peft import PeftModel",
        "",
        f"unet = {load_base}  # the base model",
        f"unet.register_to_config(sample_size={image_size})  # the size the adapter was trained at",
        f"unet = PeftModel.from_pretrained(unet, {where}).merge_and_unload()",
        f'pipe = {pipe}(unet=unet, scheduler={scheduler}.from_pretrained({where}, subfolder="scheduler"))',
        f"images = pipe(batch_size=4, num_inference_steps={pipeline.steps}{options}, generator=torch.Generator().manual_seed(0)).images",
        'images[0].save("sample.png")',
    ])  # fmt: skip
