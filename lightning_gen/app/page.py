"""The Gradio page: Mix, Edit and Sample tabs; each tab's function is also the API endpoint /mix, /edit, /sample.

The endpoints' parameters are named like the commands' options (``mix --steps``: ``steps``) and default to
what the commands default to, so ``gradio_client`` callers pass only what they change (see the README).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from lightning_gen.app.service import MixerService, release_memory
from lightning_gen.errors import UserError

EDIT_SLOTS = 4  # attributes that can be edited at once, each with its own slider (attribute_1/strength_1 … _4)
MAX_UPLOAD = "20mb"  # Gradio refuses bigger uploads with a message on the page
# Model images are small (32–64 px): shown enlarged with sharp pixels instead of as specks.
CSS = """
#mix_result img, #mix_strip img, #edit_result img, #samples img, #mix_a img, #mix_b img, #edit_image img {
    image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain;
}
"""


class UploadedImage(gr.Image):
    """An image input that hands the function the upload decoded once at the model's size (``prepare``), so a
    9000-pixel photo is never held whole after its upload; bad or too-big uploads become a message on the page."""

    is_template = True  # drawn by Gradio's own image widget, and named Image in the API
    prepare: Callable[[str, str], str] | None = None  # (uploaded file, its name) → a small PNG; set by build_page

    def preprocess(self, payload: Any) -> Any:
        if payload is None:
            return None
        # Gradio's own preprocessing opens the file and may convert it whole; only a data: URL needs it to become a file.
        path = payload.path if payload.path is not None else super().preprocess(payload)
        if self.prepare is None:
            return path
        try:
            return self.prepare(path, Path(payload.orig_name or path).name)
        except UserError as error:
            raise gr.Error(str(error)) from error


class OptionalDropdown(gr.Dropdown):
    """A dropdown that says so in the API when the checkpoint offers no choices (rather than an empty ``Literal[]``)."""

    is_template = True  # drawn by Gradio's own dropdown, and named Dropdown in the API

    def api_info(self) -> dict[str, Any]:
        if not self.choices:
            return {"type": "string", "additional_description": "this checkpoint takes none: leave it out"}
        return super().api_info()


def on_page(function: Callable) -> Callable:
    """User mistakes (a bad image, a missing condition) are shown on the page as their one sentence;
    memory freed while serving a request goes back to the system after it."""

    @functools.wraps(function)
    def wrapped(*args: Any) -> Any:
        try:
            return function(*args)
        except UserError as error:
            raise gr.Error(str(error)) from error
        finally:
            release_memory()

    return wrapped


def build_page(service: MixerService) -> gr.Blocks:
    conditions = list(service.condition_names)
    gallery_paths = service.gallery()
    with gr.Blocks(title="Kitten Mixer — lightning_gen") as page:
        gr.Markdown(f"# Kitten Mixer\nCheckpoint `{service.ckpt_path}` ({type(service.model).__name__}).")
        with gr.Tab("Mix", visible=service.can_mix):
            with gr.Row():
                image_a = UploadedImage(label="Image A", type="filepath", image_mode=None, height=220, sources=["upload"], elem_id="mix_a")
                image_b = UploadedImage(label="Image B", type="filepath", image_mode=None, height=220, sources=["upload"], elem_id="mix_b")
                blended = gr.Image(label="Mix", type="pil", format="png", height=220, interactive=False, elem_id="mix_result")
            gallery = gr.Gallery(
                value=gallery_paths,
                label="Validation images: click one to use it as A, then another as B",
                columns=12,
                height=110,
                visible=bool(gallery_paths),
                allow_preview=False,
                elem_id="mix_gallery",
            )
            ratio = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Mix ratio (0 = A, 1 = B)", elem_id="mix_ratio")
            with gr.Row():
                steps = gr.Slider(2, 32, value=8, step=1, label="Strip steps")
                mode = gr.Radio(["slerp", "lerp"], value="slerp", label="Interpolation")
                mix_condition = OptionalDropdown(
                    conditions,
                    value=conditions[0] if service.needs_condition and conditions else None,
                    label="Condition",
                    visible=bool(conditions),
                    allow_custom_value=False,
                )
                inversion_steps = gr.Number(
                    value=None,
                    precision=0,
                    label="DDIM inversion steps (diffusion models)",
                    visible=service.inverts,
                )
            strip = gr.Image(
                label="Strip: A, A's reconstruction … B's reconstruction, B",
                type="pil",
                format="png",
                interactive=False,
                elem_id="mix_strip",
            )
            mix_inputs = [image_a, image_b, ratio, steps, mode, mix_condition, inversion_steps]

            def mix(image_a, image_b, ratio=0.5, steps=8, mode="slerp", condition=None, inversion_steps=None):
                if not image_a or not image_b:
                    return None, None  # nothing to blend yet: no message while the user is still uploading
                return on_page(service.mix)(
                    image_a, image_b, ratio, int(steps), mode, condition, int(inversion_steps) if inversion_steps else None
                )

            for trigger in (ratio.release, steps.release, mode.change, mix_condition.change, image_a.change, image_b.change):
                trigger(mix, mix_inputs, [blended, strip], api_name=False)
            gr.Button("Mix", variant="primary").click(mix, mix_inputs, [blended, strip], api_name="mix")

            def pick(selection: gr.SelectData, a, b):
                path = gallery_paths[selection.index]
                return (path, b) if not a or b else (a, path)

            gallery.select(pick, [image_a, image_b], [image_a, image_b], api_name=False)

        with gr.Tab("Edit", visible=service.can_edit):
            with gr.Row():
                edit_image = UploadedImage(
                    label="Image", type="filepath", image_mode=None, sources=["upload"], height=220, elem_id="edit_image"
                )
                edited = gr.Image(label="Edited", type="pil", format="png", height=220, interactive=False, elem_id="edit_result")
            names = list(service.attribute_names)
            slots = []
            for slot in range(EDIT_SLOTS):
                with gr.Row():
                    name = OptionalDropdown(
                        names, value=names[slot] if slot < len(names) and slot == 0 else None, label=f"Attribute {slot + 1}"
                    )
                    strength = gr.Slider(-3.0, 3.0, value=0.0, step=0.25, label="Strength")
                slots.append((name, strength))
            with gr.Row(visible=service.needs_condition):
                image_condition = OptionalDropdown(conditions, value=None, label="The image's condition (CVAE)")
                edit_condition = OptionalDropdown(conditions, value=None, label="Decode with (CVAE: swaps the condition)")
            edit_inputs = [edit_image, *[component for pair in slots for component in pair], image_condition, edit_condition]

            def edit(
                image,
                attribute_1=None,
                strength_1=0.0,
                attribute_2=None,
                strength_2=0.0,
                attribute_3=None,
                strength_3=0.0,
                attribute_4=None,
                strength_4=0.0,
                image_condition=None,
                condition=None,
            ):
                if not image:
                    return None
                attributes = [attribute_1, attribute_2, attribute_3, attribute_4]
                strengths = [float(value or 0.0) for value in (strength_1, strength_2, strength_3, strength_4)]
                return on_page(service.edit)(image, attributes, strengths, image_condition, condition)

            for _, strength in slots:
                strength.release(edit, edit_inputs, edited, api_name=False)
            gr.Button("Edit", variant="primary").click(edit, edit_inputs, edited, api_name="edit")

        with gr.Tab("Sample"):
            with gr.Row():
                num = gr.Slider(1, 64, value=16, step=1, label="Images")
                seed = gr.Number(value=0, precision=0, label="Seed")
                sample_steps = gr.Number(value=None, precision=0, label="Sampling steps (diffusion models)")
            with gr.Row():
                sample_condition = OptionalDropdown(
                    conditions, value=None, multiselect=True, label="Class / attributes", visible=bool(conditions)
                )
                prompt = gr.Textbox(label="Prompt", visible=service.takes_prompt)
            samples = gr.Image(label="Samples", type="pil", format="png", interactive=False, elem_id="samples")

            def sample(num=16, seed=0, condition=None, prompt=None, steps=None):
                chosen = ",".join(condition) if isinstance(condition, (list, tuple)) else condition
                return on_page(service.sample)(int(num), int(seed or 0), chosen or None, prompt or None, int(steps) if steps else None)

            gr.Button("Sample", variant="primary").click(
                sample, [num, seed, sample_condition, prompt, sample_steps], samples, api_name="sample"
            )

        for upload in (image_a, image_b, edit_image):
            upload.prepare = service.prepare_upload
    return page


def launch(service: MixerService, host: str = "127.0.0.1", port: int = 7860, share: bool = False, **options: Any) -> None:
    page = build_page(service)
    page.queue().launch(server_name=host, server_port=port, share=share, max_file_size=MAX_UPLOAD, show_error=True, css=CSS, **options)
