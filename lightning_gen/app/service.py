"""What the page does, without Gradio: the model loaded once, and the same functions as ``mix``, ``edit`` and ``sample``."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import math
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torchvision.utils import make_grid

from lightning_gen.data.preprocess import load_user_image
from lightning_gen.errors import UserError
from lightning_gen.inference.codec import make_codec
from lightning_gen.inference.conditions import condition_by_names, resolve_condition
from lightning_gen.inference.directions import load_directions
from lightning_gen.inference.loading import load_model
from lightning_gen.inference.sampling import sampling_kwargs
from lightning_gen.latent.directions import DEFAULT_REFERENCES, Directions
from lightning_gen.latent.editing import DEFAULT_NEIGHBOURS, condition_pair, edit_images, slider_edit
from lightning_gen.latent.interpolate import Mode
from lightning_gen.latent.mixing import EncodedPair, blend, encode_pair, mix_strip, strip_grid, to_pil
from lightning_gen.latent.reference_data import check_run_config, data_section_of_run, instantiate_data
from lightning_gen.protocol import has_latents, is_conditional, is_invertible

GALLERY_SIZE = 12
MAX_SAMPLES = 64
UPLOADS_KEPT = 32  # uploads remembered as their small, model-size PNG (the newest ones)


def release_memory() -> None:
    """Hands memory freed while serving a request back to the system: glibc keeps the freed blocks of a
    decoded photo in its arenas (the page's RSS would stay gigabytes up after a few big uploads). No
    gc.collect(): decoded images are freed as their last reference goes, and a collection takes a second."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return None


@dataclass
class MixerService:
    """One checkpoint, loaded once; each public method serves one tab (and one API endpoint)."""

    ckpt_path: str
    device: str = "cpu"
    references: int = DEFAULT_REFERENCES
    neighbours: int = DEFAULT_NEIGHBOURS
    model: Any = field(init=False)
    _encoded: dict[tuple, EncodedPair] = field(default_factory=dict, init=False)
    _directions: Directions | None = field(default=None, init=False)
    _uploads: dict[str, str] = field(default_factory=dict, init=False)
    _upload_folder: Path | None = field(default=None, init=False)
    _uploads_lock: threading.Lock = field(default_factory=threading.Lock, init=False)  # the page serves tabs in threads

    def __post_init__(self) -> None:
        check_run_config(self.ckpt_path)  # the run's config.yaml builds the gallery and directions: refuse a hostile one at start-up
        self.model = load_model(self.ckpt_path, self.device)

    # -- what the checkpoint offers ---------------------------------------------------------------
    @property
    def can_mix(self) -> bool:
        return has_latents(self.model) or is_invertible(self.model)

    @property
    def can_edit(self) -> bool:
        return has_latents(self.model) and bool(self.model.data_facts.attribute_names)

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return tuple(self.model.data_facts.attribute_names)

    @property
    def inverts(self) -> bool:
        """Images are encoded by inversion (a diffusion model), which takes a number of steps."""
        return is_invertible(self.model) and not has_latents(self.model)

    @property
    def condition_names(self) -> tuple[str, ...]:
        """Names a condition can be built from: a CVAE's classes or attributes, a class DDPM's classes."""
        return tuple(self.model.condition_vocabulary)

    @property
    def needs_condition(self) -> bool:
        return has_latents(self.model) and is_conditional(self.model)  # a CVAE cannot encode or decode without one

    @property
    def takes_prompt(self) -> bool:
        return is_conditional(self.model)

    def gallery(self, count: int = GALLERY_SIZE) -> list[str]:
        """Validation images of the run's data as PNG files (empty when the run's data is not at hand)."""
        try:
            datamodule = instantiate_data(data_section_of_run(self.ckpt_path))
            datamodule.prepare_data()
            datamodule.setup("fit")
            batch = next(iter(datamodule.val_dataloader()))
        except (UserError, OSError, StopIteration):
            return []
        folder = Path(tempfile.mkdtemp(prefix="kitten_mixer_gallery_"))
        paths = []
        for index, image in enumerate(batch["image"][:count]):
            path = folder / f"validation_{index:02d}.png"
            to_pil(image).save(path)
            paths.append(str(path))
        return paths

    # -- Uploads ------------------------------------------------------------------------------
    def prepare_upload(self, path: str, name: str | None = None) -> str:
        """The uploaded image decoded once, like the training images (the pixel limit, JPEG draft decoding and
        box reduction bound its memory), as a small PNG at the model's size that the tabs read from then on."""
        if path in self._uploads:
            return self._uploads[path]
        label = f"the upload {name}" if name else "the upload"
        try:
            with open(path, "rb") as stream:
                picture = load_user_image(stream, self.model.data_facts, label)
        except OSError as error:
            raise UserError(f"{label} could not be read ({error.strerror or error}); upload it again.") from error
        finally:
            release_memory()
        with self._uploads_lock:
            if self._upload_folder is None:
                self._upload_folder = Path(tempfile.mkdtemp(prefix="kitten_mixer_uploads_"))
            small = self._upload_folder / f"{hashlib.sha1(path.encode()).hexdigest()[:16]}.png"
            to_pil(picture[0]).save(small)
            self._uploads[path] = str(small)
            while len(self._uploads) > UPLOADS_KEPT:
                Path(self._uploads.pop(next(iter(self._uploads)))).unlink(missing_ok=True)
        return str(small)

    # -- Mix ----------------------------------------------------------------------------------
    def _pair(self, image_a: str, image_b: str, condition: str | None, inversion_steps: int | None) -> tuple[Any, EncodedPair]:
        codec = make_codec(self.model, condition or None, inversion_steps)
        key = (image_a, image_b, condition, inversion_steps)
        if key not in self._encoded:  # moving the slider re-decodes; it never re-encodes
            facts = self.model.data_facts
            self._encoded = {
                key: encode_pair(
                    codec, load_user_image(image_a, facts, "the first image"), load_user_image(image_b, facts, "the second image")
                )
            }
        return codec, self._encoded[key]

    def mix(
        self,
        image_a: str | None,
        image_b: str | None,
        ratio: float,
        steps: int = 8,
        mode: Mode = "slerp",
        condition: str | None = None,
        inversion_steps: int | None = None,
    ) -> tuple[Image.Image, Image.Image]:
        """The blend at ``ratio`` and the whole strip (A, the mixes from A's reconstruction to B's, B)."""
        if not image_a or not image_b:
            raise UserError("upload or pick two images first.")
        codec, pair = self._pair(image_a, image_b, condition, inversion_steps)
        blended = blend(codec, pair, float(ratio), mode)[0]
        strip = mix_strip(codec, pair, int(steps), mode)
        return to_pil(blended), to_pil(strip_grid(strip))

    # -- Edit ---------------------------------------------------------------------------------
    def directions(self) -> Directions:
        if self._directions is None:
            self._directions, _ = load_directions(self.model, self.ckpt_path, self.references, data_section_of_run(self.ckpt_path))
        return self._directions

    def edit(
        self,
        image: str | None,
        attributes: Sequence[str | None],
        strengths: Sequence[float],
        image_condition: str | None = None,
        condition: str | None = None,
    ) -> Image.Image:
        """The image with each chosen attribute applied at its slider's strength (all at once)."""
        if not image:
            raise UserError("upload or pick an image first.")
        chosen: dict[str, float] = {}
        for name, strength in zip(attributes, strengths):
            if name:
                chosen[name] = chosen.get(name, 0.0) + float(strength)
        codec = condition_pair(
            self.model,
            condition_by_names(self.model, image_condition or None, "image condition"),
            condition_by_names(self.model, condition or None),
        )
        picture = load_user_image(image, self.model.data_facts)
        return to_pil(edit_images(codec, picture, slider_edit(self.directions(), chosen, self.neighbours), [1.0])[0, 0])

    # -- Sample -------------------------------------------------------------------------------
    def sample(self, num: int, seed: int, condition: str | None = None, prompt: str | None = None, steps: int | None = None) -> Image.Image:
        num = int(num)
        if not 1 <= num <= MAX_SAMPLES:
            raise UserError(f"the number of samples must be between 1 and {MAX_SAMPLES}, got {num}.")
        model = self.model
        chosen_condition = resolve_condition(model, num, condition or None, prompt or None)
        kwargs = sampling_kwargs(model, {"steps": int(steps) if steps else None})
        generator = torch.Generator(device=model.device).manual_seed(int(seed))
        with torch.no_grad():
            images = model.sample(num, condition=chosen_condition, generator=generator, **kwargs)
        # Laid out as the sample command lays out its grid.
        return to_pil(make_grid(images.float().cpu(), nrow=math.ceil(math.sqrt(num)), padding=1))
