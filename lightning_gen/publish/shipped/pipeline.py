"""A lightning_gen diffusion pipeline: class- or text-conditional with classifier-free guidance, and/or latent.

Load it with stock diffusers (this file ships in the model folder, so its code runs on load)::

    pipe = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    images = pipe(class_labels=["circle", "square"], guidance_scale=2.0, num_inference_steps=50,
                  generator=torch.Generator().manual_seed(0)).images          # a class model
    images = pipe(prompt="a large red circle", generator=torch.Generator().manual_seed(0)).images  # a text model
    images = pipe(batch_size=4, generator=torch.Generator().manual_seed(0)).images  # an unconditional latent model

It reproduces lightning_gen's ``DDPM.sample``: noise drawn first from ``generator``; the conditional and the
null-condition passes in one UNet call; ``uncond + scale·(cond − uncond)``; then ``pipe.scheduler.step``:

- ``DDIMScheduler``: DDIM with the clipped model output; ``DDPMScheduler``: the ancestral step;
- ``FlowMatchEulerDiscreteScheduler`` / ``FlowMatchHeunDiscreteScheduler`` (a flow-matching model): the UNet
  predicts the velocity ε − x0 of the straight path x_t = (1 − t)·x0 + t·ε and takes t·num_train_timesteps as
  its timestep (the scheduler's ``timesteps``), the scheduler integrates from t = 1 to 0 (Heun: two UNet calls a
  step, guidance at each);

images are mapped from [−1, 1] to [0, 1]. With a ``vae`` (a latent model) the sample is a latent: it is decoded
as ``vae.decode(latents / vae.config.scaling_factor)`` first.
"""

from typing import Any

import torch
from diffusers import DDIMScheduler, DiffusionPipeline, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor


class LightningGenConditionalPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["text_encoder", "tokenizer", "null_text", "vae"]

    def __init__(
        self,
        unet,
        scheduler,
        text_encoder=None,
        tokenizer=None,
        null_text=None,
        vae=None,
        conditioning: str = "class",
        id2label: dict | None = None,
        max_text_length: int = 64,
        default_guidance_scale: float = 2.0,
        default_num_inference_steps: int = 50,
    ):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer, null_text=null_text, vae=vae)
        self.register_to_config(
            conditioning=conditioning,
            id2label=id2label,
            max_text_length=max_text_length,
            default_guidance_scale=default_guidance_scale,
            default_num_inference_steps=default_num_inference_steps,
        )

    # -- conditions --------------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        id2label = self.config.id2label or {}
        return [id2label[str(index)] for index in range(len(id2label))]

    def get_label_ids(self, label: Any) -> list[int]:
        """Class ids of ``label`` (a name, an id, or a list of them), as DiTPipeline.get_label_ids."""
        labels = label.tolist() if isinstance(label, torch.Tensor) else label
        labels = labels if isinstance(labels, (list, tuple)) else [labels]
        ids = []
        for item in labels:
            if isinstance(item, str):
                if item not in self.labels:
                    raise ValueError(f"Unknown class name {item!r}; valid names are: {', '.join(self.labels)}.")
                ids.append(self.labels.index(item))
            elif 0 <= int(item) < len(self.labels):
                ids.append(int(item))
            else:
                raise ValueError(f"Class id {item} is not in [0, {len(self.labels)}).")
        return ids

    def _class_inputs(self, ids: list[int] | None, n: int, device: torch.device) -> tuple[dict, dict]:
        null = {"class_labels": torch.full((n,), len(self.labels), dtype=torch.long, device=device)}
        if ids is None:
            return null, null
        return {"class_labels": torch.tensor(ids, dtype=torch.long, device=device)}, null

    def encode_prompt(self, prompts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """T5 embeddings padded/truncated to max_text_length, zeroed at padding, and their boolean mask."""
        tokens = self.tokenizer(prompts, padding="max_length", max_length=self.config.max_text_length, truncation=True, return_tensors="pt")
        ids, mask = tokens["input_ids"].to(device), tokens["attention_mask"].to(device)
        embeddings = self.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        mask = mask.bool()
        return embeddings.float() * mask[..., None], mask

    def _text_inputs(self, prompts: list[str] | None, n: int, device: torch.device) -> tuple[dict, dict]:
        null_embeddings, null_mask = self.null_text(n)
        null = {"encoder_hidden_states": null_embeddings, "encoder_attention_mask": null_mask}
        if prompts is None:
            return null, null
        embeddings, mask = self.encode_prompt(prompts, device)
        return {"encoder_hidden_states": embeddings.to(null_embeddings.dtype), "encoder_attention_mask": mask}, null

    # -- sampling ----------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        class_labels: Any = None,
        prompt: str | list[str] | None = None,
        batch_size: int | None = None,
        guidance_scale: float | None = None,
        num_inference_steps: int | None = None,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """``class_labels`` (class model: names or ids, one image each) or ``prompt`` (text model: one image per
        prompt); neither samples ``batch_size`` images from the null condition (an unconditional model: always).
        ``latents`` replaces the initial noise. ``output_type``: "pil", "np" (N×H×W×C in [0, 1]) or "pt" (N×C×H×W in [0, 1])."""
        device = self.device
        kind = self.config.conditioning
        if kind == "none" and (class_labels is not None or prompt is not None):
            raise ValueError("This model is unconditional: call it without class_labels or prompt (batch_size=N).")
        if kind == "text":
            condition = [prompt] if isinstance(prompt, str) else (list(prompt) if prompt is not None else None)
        else:
            condition = self.get_label_ids(class_labels) if class_labels is not None else None
        n = len(condition) if condition is not None else (batch_size or (len(latents) if latents is not None else 1))
        scale = self.config.default_guidance_scale if guidance_scale is None else guidance_scale
        steps = num_inference_steps or self.config.default_num_inference_steps
        if kind == "none":
            inputs, null = {}, {}
        else:
            inputs, null = (self._text_inputs if kind == "text" else self._class_inputs)(condition, n, device)
        guided = condition is not None and scale != 1.0
        if guided:  # the conditional and null-condition passes share one UNet call on a doubled batch
            inputs = {key: torch.cat([value, null[key]]) for key, value in inputs.items()}
        self.scheduler.set_timesteps(steps, device=device)
        shape = (n, self.unet.config.in_channels, self.unet.config.sample_size, self.unet.config.sample_size)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
        sample = latents.to(device, self.unet.dtype)
        step_options = {"use_clipped_model_output": True} if isinstance(self.scheduler, DDIMScheduler) else {}
        for timestep in self.progress_bar(self.scheduler.timesteps):
            model_input = torch.cat([sample, sample]) if guided else sample
            output = self.unet(model_input, timestep.expand(len(model_input)), **inputs).sample
            if guided:
                conditional, unconditional = output.chunk(2)
                output = unconditional + scale * (conditional - unconditional)
            sample = self.scheduler.step(output, timestep, sample, generator=generator, **step_options).prev_sample
        if self.vae is not None:  # a latent model: the UNet's sample is scaling_factor × the autoencoder's latents
            sample = self.vae.decode(sample.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        image = ((sample.float() + 1.0) / 2.0).clamp(0.0, 1.0)
        if output_type != "pt":
            image = image.cpu().permute(0, 2, 3, 1).numpy()
            if output_type == "pil":
                image = self.numpy_to_pil(image)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (image,)
        return ImagePipelineOutput(images=image)
