"""The Gradio page: Mix, Edit and Sample tabs; each tab's function is also the API endpoint /mix, /edit, /sample."""

from __future__ import annotations

import functools
from typing import Any, Callable

import gradio as gr
from PIL import Image, UnidentifiedImageError

from lightning_gen.app.service import MixerService
from lightning_gen.data.preprocess import DECODE_ERRORS
from lightning_gen.errors import UserError

EDIT_SLOTS = 4  # attributes that can be edited at once, each with its own slider
MAX_UPLOAD = "20mb"  # Gradio refuses bigger uploads with a message on the page
# Model images are small (32–64 px): shown enlarged with sharp pixels instead of as specks.
CSS = """
#mix_result img, #mix_strip img, #edit_result img, #samples img, #mix_a img, #mix_b img, #edit_image img {
    image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain;
}
"""


class UploadedImage(gr.Image):
    """An image input whose non-image uploads become a message on the page instead of a server error."""

    def get_block_name(self) -> str:
        return "image"  # drawn by Gradio's own image widget

    def preprocess(self, payload: Any) -> Any:
        try:
            return super().preprocess(payload)
        except (UnidentifiedImageError, *DECODE_ERRORS) as error:
            raise gr.Error(f"That upload is not an image PIL can read ({type(error).__name__}); upload a JPEG or PNG.") from error


def on_page(function: Callable) -> Callable:
    """User mistakes (a bad image, a missing condition) are shown on the page as their one sentence."""

    @functools.wraps(function)
    def wrapped(*args: Any) -> Any:
        try:
            return function(*args)
        except UserError as error:
            raise gr.Error(str(error)) from error

    return wrapped


def build_page(service: MixerService) -> gr.Blocks:
    conditions = list(service.condition_names)
    gallery_paths = service.gallery()
    with gr.Blocks(title="Kitten Mixer — lightning_gen") as page:
        gr.Markdown(f"# Kitten Mixer\nCheckpoint `{service.ckpt_path}` ({type(service.model).__name__}).")
        with gr.Tab("Mix", visible=service.can_mix):
            with gr.Row():
                image_a = UploadedImage(label="Image A", type="filepath", height=220, sources=["upload"], elem_id="mix_a")
                image_b = UploadedImage(label="Image B", type="filepath", height=220, sources=["upload"], elem_id="mix_b")
                blended = gr.Image(label="Mix", type="pil", format="png", height=220, interactive=False, elem_id="mix_result")
            gallery = gr.Gallery(value=gallery_paths, label="Validation images: click one to use it as A, then another as B",
                                 columns=12, height=110, visible=bool(gallery_paths), allow_preview=False, elem_id="mix_gallery")
            ratio = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Mix ratio (0 = A, 1 = B)", elem_id="mix_ratio")
            with gr.Row():
                steps = gr.Slider(2, 32, value=8, step=1, label="Strip steps")
                mode = gr.Radio(["slerp", "lerp"], value="slerp", label="Interpolation")
                mix_condition = gr.Dropdown(conditions, value=conditions[0] if service.needs_condition and conditions else None,
                                            label="Condition", visible=bool(conditions), allow_custom_value=False)
                inversion_steps = gr.Number(value=None, precision=0, label="DDIM inversion steps (diffusion models)",
                                            visible=not service.model.__class__.__name__.endswith("VAE") and not service.needs_condition)
            strip = gr.Image(label="Strip: A, A's reconstruction … B's reconstruction, B", type="pil", format="png", interactive=False, elem_id="mix_strip")
            mix_inputs = [image_a, image_b, ratio, steps, mode, mix_condition, inversion_steps]

            def mix(a, b, r, n, m, c, k):
                if not a or not b:
                    return None, None  # nothing to blend yet: no message while the user is still uploading
                return on_page(service.mix)(a, b, r, int(n), m, c, int(k) if k else None)

            for trigger in (ratio.release, steps.release, mode.change, mix_condition.change, image_a.change, image_b.change):
                trigger(mix, mix_inputs, [blended, strip], api_name=False)
            gr.Button("Mix", variant="primary").click(mix, mix_inputs, [blended, strip], api_name="mix")

            def pick(selection: gr.SelectData, a, b):
                path = gallery_paths[selection.index]
                return (path, b) if not a or b else (a, path)

            gallery.select(pick, [image_a, image_b], [image_a, image_b], api_name=False)

        with gr.Tab("Edit", visible=service.can_edit):
            with gr.Row():
                edit_image = UploadedImage(label="Image", type="filepath", sources=["upload"], height=220, elem_id="edit_image")
                edited = gr.Image(label="Edited", type="pil", format="png", height=220, interactive=False, elem_id="edit_result")
            names = list(service.attribute_names)
            slots = []
            for slot in range(EDIT_SLOTS):
                with gr.Row():
                    name = gr.Dropdown(names, value=names[slot] if slot < len(names) and slot == 0 else None, label=f"Attribute {slot + 1}")
                    strength = gr.Slider(-3.0, 3.0, value=0.0, step=0.25, label="Strength")
                slots.append((name, strength))
            with gr.Row(visible=service.needs_condition):
                image_condition = gr.Dropdown(conditions, value=None, label="The image's condition (CVAE)")
                edit_condition = gr.Dropdown(conditions, value=None, label="Decode with (CVAE: swaps the condition)")
            edit_inputs = [edit_image, *[component for pair in slots for component in pair], image_condition, edit_condition]

            def edit(image, *values):
                if not image:
                    return None
                pairs, (own, other) = values[: 2 * EDIT_SLOTS], values[2 * EDIT_SLOTS :]
                return on_page(service.edit)(image, list(pairs[0::2]), [float(v) for v in pairs[1::2]], own, other)

            for _, strength in slots:
                strength.release(edit, edit_inputs, edited, api_name=False)
            gr.Button("Edit", variant="primary").click(edit, edit_inputs, edited, api_name="edit")

        with gr.Tab("Sample"):
            with gr.Row():
                num = gr.Slider(1, 64, value=16, step=1, label="Images")
                seed = gr.Number(value=0, precision=0, label="Seed")
                sample_steps = gr.Number(value=None, precision=0, label="Sampling steps (diffusion models)")
            with gr.Row():
                sample_condition = gr.Dropdown(conditions, value=None,
                                               multiselect=True, label="Class / attributes", visible=bool(conditions))
                prompt = gr.Textbox(label="Prompt", visible=service.takes_prompt)
            samples = gr.Image(label="Samples", type="pil", format="png", interactive=False, elem_id="samples")

            def sample(n, s, c, p, k):
                chosen = ",".join(c) if c else None
                return on_page(service.sample)(int(n), int(s or 0), chosen, p or None, int(k) if k else None)

            gr.Button("Sample", variant="primary").click(sample, [num, seed, sample_condition, prompt, sample_steps], samples, api_name="sample")
    return page


def launch(service: MixerService, host: str = "127.0.0.1", port: int = 7860, share: bool = False, **options: Any) -> None:
    page = build_page(service)
    page.queue().launch(server_name=host, server_port=port, share=share, max_file_size=MAX_UPLOAD, show_error=True, css=CSS, **options)
