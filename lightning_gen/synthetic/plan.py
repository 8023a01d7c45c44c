"""What an export writes: one ExportItem per image (file, class, condition, prompt, noise seed), before any sampling.

The plan is a pure function of the checkpoint's vocabulary and the command's options, so a re-run
computes the same plan, skips the files that exist and writes the same bytes for the rest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lightning_gen.errors import UserError
from lightning_gen.protocol import Generator


@dataclass(frozen=True)
class ExportItem:
    file_name: str  # relative to the export root: "red circle/000003.png", or "000003.png" when flat
    index: int  # the image's number within its class (or within the flat export)
    class_name: str | None
    label: int | None  # position of the class folder in sorted order, as torchvision's ImageFolder numbers it
    condition: Any  # one image's model condition: a class id, an attribute vector (tuple) or a caption
    prompt: str | None
    attributes: tuple[str, ...] | None  # the attribute names an attribute-conditioned image asks for
    noise_seed: int


def noise_seed(seed: int, class_name: str | None, index: int) -> int:
    """The image's own noise seed, from (seed, class, index) only: not from the batch it lands in or from
    which other images exist. A hash rather than seed + offset, so neighbouring seeds share no images."""
    digest = hashlib.sha256(f"{seed}|{class_name or ''}|{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def folder_name(class_name: str) -> str:
    """A class name as one directory name (a '/' in a name would open a sub-directory)."""
    name = class_name.replace("/", "_").replace("\\", "_").strip()
    if name in ("", ".", ".."):
        raise UserError(f"class name '{class_name}' cannot be a folder name; rename it in --prompts.")
    return name


def read_prompts(path: str | Path) -> dict[str, list[str]]:
    """A YAML/JSON mapping ``class name: prompt`` or ``class name: [prompt, prompt, ...]``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--prompts {path} does not exist; pass a YAML file mapping class names to prompts.")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise UserError(f"--prompts {path} is not valid YAML ({error}); write 'class name: prompt' lines.") from error
    if not isinstance(loaded, dict) or not loaded:
        raise UserError(f"--prompts {path} must map class names to prompts, e.g. 'red circle: a photo of a red circle'.")
    prompts = {}
    for name, value in loaded.items():
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(text, str) and text.strip() for text in values):
            raise UserError(f"--prompts {path}: class '{name}' needs a prompt or a list of prompts, got {value!r}.")
        prompts[str(name)] = [text.strip() for text in values]
    return prompts


def class_prompts(model: Generator, prompts_file: str | None, prompt_template: str | None) -> dict[str, list[str | None]]:
    """Class name → the prompts its images cycle through (None: the class is the condition, no text)."""
    kind = model.conditioning
    facts = model.data_facts
    if prompts_file is not None and prompt_template is not None:
        raise UserError("pass either --prompts or --prompt_template, not both.")
    if prompts_file is not None:
        return dict(read_prompts(prompts_file))
    names = list(facts.class_names) or (list(facts.attribute_names) if kind == "attributes" else [])
    if not names:
        raise UserError(f"this {kind}-conditioned checkpoint's data has no class names; pass --prompts with a mapping of names to prompts.")
    if prompt_template is not None and "{name}" not in prompt_template:
        raise UserError(f"--prompt_template '{prompt_template}' has no {{name}}; write e.g. 'a photo of a {{name}}'.")
    if kind == "text" and prompt_template is None:
        raise UserError(
            "a text-conditioned model needs --prompt_template with {name} (e.g. 'a large {name}') or --prompts "
            "FILE to turn class names into prompts."
        )
    return {name: [prompt_template.format(name=name) if prompt_template else None] for name in names}


def one_condition(model: Generator, class_name: str, prompt: str | None) -> tuple[Any, tuple[str, ...] | None]:
    """(the model condition of one image, the attribute names it asks for)."""
    kind = model.conditioning
    if kind == "text":
        return prompt, None
    if kind == "class":
        names = list(model.data_facts.class_names)
        if class_name not in names:
            raise UserError(f"class '{class_name}' is not one of this checkpoint's classes; use one of: {', '.join(names)}.")
        return names.index(class_name), None
    # Attribute models read the class name (or the prompt) as words naming attributes: "red circle" → red, circle.
    vector = model.condition_from_prompt(prompt or class_name, 1)[0].flatten().tolist()
    vocabulary = model.data_facts.attribute_names
    return tuple(vector), tuple(name for name, on in zip(vocabulary, vector) if on > 0.5)


def build_plan(
    model: Generator,
    seed: int,
    per_class: int | None = None,
    num: int | None = None,
    prompts_file: str | None = None,
    prompt_template: str | None = None,
) -> list[ExportItem]:
    kind = model.conditioning
    if kind == "none":
        if per_class is not None:
            raise UserError(
                f"{type(model).__name__} in --ckpt_path is unconditional (no classes, attributes or text); "
                f"export it flat with --num N instead of --per_class."
            )
        if num is None or num < 1:
            raise UserError("an unconditional checkpoint is exported flat: pass --num N (at least 1).")
        return [ExportItem(f"{i:06d}.png", i, None, None, None, None, None, noise_seed(seed, None, i)) for i in range(num)]
    if num is not None:
        raise UserError(f"this checkpoint is {kind}-conditioned; pass --per_class N (images per class) instead of --num.")
    if per_class is None or per_class < 1:
        raise UserError(f"this checkpoint is {kind}-conditioned; pass --per_class N (at least 1 image per class).")
    prompts = class_prompts(model, prompts_file, prompt_template)
    folders = {name: folder_name(name) for name in prompts}
    if len(set(folders.values())) < len(folders):
        raise UserError("two class names map to the same folder name; make them differ in more than '/' characters.")
    labels = {folder: label for label, folder in enumerate(sorted(folders.values()))}
    items = []
    for name, texts in prompts.items():
        conditions = [one_condition(model, name, text) for text in texts]
        for index in range(per_class):
            condition, attributes = conditions[index % len(texts)]
            items.append(
                ExportItem(
                    f"{folders[name]}/{index:06d}.png",
                    index,
                    name,
                    labels[folders[name]],
                    condition,
                    texts[index % len(texts)],
                    attributes,
                    noise_seed(seed, name, index),
                )
            )
    return items
