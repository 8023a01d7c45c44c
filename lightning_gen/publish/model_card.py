"""The Hub model card (README.md) of a published model: YAML metadata, what it is, how to load it, what the run recorded."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from lightning_gen.facts import DataFacts
from lightning_gen.publish.autoencoder_export import AUTOENCODER_CLASS, AutoencoderExport, autoencoder_snippet
from lightning_gen.publish.lora_export import LORA_ADAPTER, adapter_snippet
from lightning_gen.publish.pipelines import CONDITIONAL_PIPELINE, PipelineExport
from lightning_gen.publish.run_facts import RunFacts

SAMPLE_GRID = "samples.png"
SNIPPET_FENCE = "```python"


@dataclass(frozen=True)
class CardFacts:
    """What the card says about the model itself (the command fills it from the loaded model)."""

    model_class: str
    conditioning: str
    data_facts: DataFacts
    parameters: int
    location: str  # the repo id it is pushed to, or the folder
    weights: str  # "EMA" or "raw"
    license: str | None = None
    datasets: tuple[str, ...] = ()
    base_model: str | None = None
    grid_caption: str = ""


Export = PipelineExport | AutoencoderExport | None  # None: a VAE/CVAE for PublishedModel


def loading_snippet(facts: CardFacts, pipeline: Export) -> str:
    """Python that loads the published model and writes sample.png (the test runs it as it stands)."""
    where = json.dumps(facts.location)
    seed = "generator=torch.Generator().manual_seed(0)"
    data = facts.data_facts
    if isinstance(pipeline, AutoencoderExport):
        return autoencoder_snippet(facts.location, pipeline, (data.channels, data.image_size, data.image_size))
    if pipeline is None:
        names = facts.data_facts.class_names or facts.data_facts.attribute_names
        condition = f"model.model.condition_from_names([{json.dumps(names[0])}], 4)" if facts.conditioning != "none" else "None"
        return "\n".join([
            "import torch",
            "from torchvision.utils import save_image",
            "from lightning_gen.publish import PublishedModel  # pip install lightning_gen",
            "",
            f"model = PublishedModel.from_pretrained({where})",
            f"condition = {condition}",
            f"images = model.sample(4, condition, {seed})  # N×C×H×W in [0, 1]",
            "reconstructions = model.reconstruct(images, condition)",
            'save_image(images, "sample.png")',
        ])  # fmt: skip
    if pipeline.pipeline_class == LORA_ADAPTER:
        return adapter_snippet(facts.location, pipeline, facts.data_facts.image_size)
    steps = f"num_inference_steps={pipeline.steps}"
    if pipeline.pipeline_class == CONDITIONAL_PIPELINE:
        if pipeline.conditioning == "none":  # a latent model
            call = f"pipe(batch_size=4, {steps}, {seed})"
        else:
            condition = (
                f"class_labels={json.dumps(list(pipeline.class_names[:2]))}" if pipeline.conditioning == "class" else 'prompt=["a photo"]'
            )
            call = f"pipe({condition}, guidance_scale={pipeline.guidance_scale}, {steps}, {seed})"
        load = f"pipe = DiffusionPipeline.from_pretrained({where}, trust_remote_code=True)  # runs the pipeline.py shipped with it"
        imports = "from diffusers import DiffusionPipeline"
    elif pipeline.pipeline_class == "DDIMPipeline":
        call = f"pipe(batch_size=4, {steps}, eta=0.0, use_clipped_model_output=True, {seed})"
        load, imports = f"pipe = DDIMPipeline.from_pretrained({where})", "from diffusers import DDIMPipeline"
    else:
        call = f"pipe(batch_size=4, {steps}, {seed})"
        load, imports = f"pipe = DDPMPipeline.from_pretrained({where})", "from diffusers import DDPMPipeline"
    return "\n".join(["import torch", imports, "", load, f"images = {call}.images", 'images[0].save("sample.png")'])


def card_metadata(facts: CardFacts, pipeline: Export) -> ModelCardData:
    tags = ["lightning_gen", "pytorch", facts.model_class.rpartition(".")[2].lower()]
    if isinstance(pipeline, AutoencoderExport):
        # As the Hub's diffusers VAEs (stabilityai/sd-vae-ft-mse, sdxl-vae): library diffusers, no pipeline_tag.
        tags += ["diffusers", "diffusers:" + AUTOENCODER_CLASS, "vae"]
        return ModelCardData(
            library_name="diffusers", license=facts.license, tags=tags, datasets=list(facts.datasets) or None, base_model=facts.base_model
        )
    adapter = pipeline is not None and pipeline.pipeline_class == LORA_ADAPTER
    if adapter:
        tags += ["peft", "lora", "ddpm"]
    elif pipeline is not None:
        tags += ["diffusers", "ddpm", "diffusers:" + pipeline.pipeline_class]
        tags += ["flow-matching"] if pipeline.objective == "flow_matching" else []
        tags += ["latent-diffusion"] if pipeline.latent else []
        if facts.conditioning == "class":
            tags.append("class-conditional-image-generation")
    pipeline_tag = "text-to-image" if facts.conditioning == "text" else "unconditional-image-generation"
    return ModelCardData(
        library_name="peft" if adapter else "diffusers" if pipeline is not None else "lightning_gen",
        license=facts.license,
        tags=tags,
        pipeline_tag=pipeline_tag,
        datasets=list(facts.datasets) or None,
        base_model=facts.base_model,
    )


def _scores_table(run: RunFacts) -> list[str]:
    if not run.scores:
        return ["No `evaluate` scores were recorded in the run (`python -m lightning_gen evaluate --ckpt_path ...` adds them)."]
    lines = ["| metric | subject | value | generated | real | seed | data | extractor | note |", "|---|---|---|---|---|---|---|---|---|"]
    for score in run.scores:
        cells = [score.get(key) for key in ("metric", "subject", "value", "generated", "real", "seed", "data", "extractor", "note")]
        cells[2] = f"{cells[2]:.4g}" if isinstance(cells[2], float) else cells[2]
        lines.append("| " + " | ".join("" if cell is None else str(cell) for cell in cells) + " |")
    return lines


def _training_lines(run: RunFacts) -> list[str]:
    recorded = {
        "optimizer steps": run.global_step,
        "epochs": None if run.epoch is None else run.epoch + 1,
        "wall time": None if run.wall_time_s is None else f"{run.wall_time_s / 3600:.2f} h",
        "hardware": run.hardware,
    }
    return [f"- {name}: {value if value is not None else 'not recorded'}" for name, value in recorded.items()]


def _export_lines(facts: CardFacts, pipeline: Export) -> list[str]:
    """What the folder is, in a sentence or two."""
    if isinstance(pipeline, AutoencoderExport):
        measured = f"measured with the weights of step {pipeline.scale_step}" if pipeline.scale_step >= 0 else "never measured: 1.0"
        latent = "×".join(str(side) for side in pipeline.latent_shape)
        return [
            f"Exported as a stock diffusers `{AUTOENCODER_CLASS}` (`AutoencoderKL.from_pretrained`); an image's latent is "
            f"{latent}. `config.scaling_factor` = {pipeline.scaling_factor:.6g} is the latent scale lightning_gen recorded "
            f"(1 / std of the training images' posterior means, {measured}): `latents * scaling_factor` has unit variance.",
            "lightning_gen's images are in [0, 1], diffusers' VAEs work in [-1, 1]: `Autoencoder.encode(x)` is "
            "`vae.encode(2 * x - 1).latent_dist.mean` and `Autoencoder.decode(z)` is `((vae.decode(z).sample + 1) / 2).clamp(0, 1)`.",
        ]
    if pipeline is not None and pipeline.pipeline_class == LORA_ADAPTER:
        return [
            f"Exported as a peft LoRA adapter for the UNet of `{pipeline.base_unet[0]}` (its other weights are the base's), "
            f"with the {pipeline.sampler} scheduler it samples with ({pipeline.steps} steps) in `scheduler/`."
        ]
    if pipeline is not None:
        flow = " (flow matching: the UNet predicts the velocity ε − x0)" if pipeline.objective == "flow_matching" else ""
        latent = "; `vae/` decodes its latents (`latents / vae.config.scaling_factor`)" if pipeline.latent else ""
        return [
            f"Exported as a diffusers pipeline (`{pipeline.pipeline_class}`){latent}; the default sampler is {pipeline.sampler}{flow} "
            f"with {pipeline.steps} steps"
            + (f" and guidance scale {pipeline.guidance_scale}" if facts.conditioning != "none" else "")
            + ". "
            "Its images equal `python -m lightning_gen sample` with the same seed, steps and guidance."
        ]
    return []


def model_card(facts: CardFacts, run: RunFacts, pipeline: Export) -> ModelCard:
    data = facts.data_facts
    kind = {"none": "unconditional", "class": "class-conditional", "attributes": "attribute-conditional", "text": "text-conditional"}
    name = facts.model_class.rpartition(".")[2]
    lines = [
        f"# {name} ({kind.get(facts.conditioning, facts.conditioning)}, {data.image_size}×{data.image_size})",
        "",
        f"A {kind.get(facts.conditioning, facts.conditioning)} `{name}` trained with lightning_gen "
        f"({facts.parameters:,} parameters, {facts.weights} weights), "
        + ("encoding and decoding" if isinstance(pipeline, AutoencoderExport) else "generating")
        + f" {data.channels}-channel {data.image_size}×{data.image_size} images in [0, 1].",
    ]
    lines += _export_lines(facts, pipeline)
    lines += ["", "## Use it", "", SNIPPET_FENCE, loading_snippet(facts, pipeline), "```", ""]
    lines += ["## Samples", "", f"![samples]({SAMPLE_GRID})", "", facts.grid_caption, ""]
    lines += ["## Data", ""]
    lines += [f"- image size: {data.image_size}, channels: {data.channels}"]
    if data.class_names:
        lines.append(f"- classes ({data.num_classes}): {', '.join(data.class_names)}")
    if data.attribute_names:
        lines.append(f"- attributes ({data.num_attributes}): {', '.join(data.attribute_names)}")
    lines.append(f"- captions: {'yes' if data.has_captions else 'no'}")
    lines.append(f"- preprocessing: centre crop {data.crop_size or 'largest square'}, {data.resize_filter} resize")
    if facts.datasets:
        lines.append(f"- datasets: {', '.join(facts.datasets)}")
    lines += ["", "## Evaluation", "", *_scores_table(run), "", "## Training", "", *_training_lines(run), ""]
    if run.config_text:
        lines += ["The run's resolved `config.yaml`:", "", "```yaml", run.config_text.rstrip(), "```", ""]
    else:
        lines += ["The checkpoint was published outside its run directory, so its training config is not known.", ""]
    lines += ["## License", "", f"{facts.license}." if facts.license else "Not stated by the publisher.", ""]
    content = f"---\n{card_metadata(facts, pipeline).to_yaml()}\n---\n\n" + "\n".join(lines)
    return ModelCard(content)


def snippet_of(readme: str | Path) -> str:
    """The first Python block of a card (what a reader copies)."""
    text = Path(readme).read_text()
    start = text.index(SNIPPET_FENCE) + len(SNIPPET_FENCE)
    return text[start : text.index("```", start)].strip() + "\n"
