"""Judge accuracy: how often a judge checkpoint finds the condition a conditional generator was asked for."""

from __future__ import annotations

from typing import Any

import torch

from lightning_gen.console.progress import track
from lightning_gen.errors import UserError
from lightning_gen.models.judge import judge_accuracy
from lightning_gen.protocol import is_conditional, is_generator


def judged_kind(model: Any) -> str:
    """What the judge checks: a text model asked for a class's prompt is judged on that class."""
    return "attributes" if model.conditioning == "attributes" else "class"


def requested_conditions(model: Any, num: int, prompt_template: str | None) -> tuple[Any, Any]:
    """(what the judge expects, what the model is given), spread evenly over the vocabulary."""
    if model.conditioning != "text":
        conditions = model.spread_conditions(num)
        return conditions, conditions
    if not prompt_template or "{name}" not in prompt_template:
        raise UserError(
            "a text-conditioned model needs --prompt_template with {name}, e.g. 'a large {name}', to turn each class name into a prompt."
        )
    names = model.data_facts.class_names
    if not names:
        raise UserError("this text model's data has no class names to build prompts from; evaluate a model trained on labelled data.")
    classes = torch.arange(num, device=model.device) % len(names)
    return classes, [prompt_template.format(name=names[i]) for i in classes.tolist()]


@torch.no_grad()
def sample_spread(
    model: Any, num: int, seed: int, batch_size: int, prompt_template: str | None = None, **sampling: Any
) -> tuple[torch.Tensor, Any]:
    """``num`` samples and the conditions the judge should find in them."""
    expected, given = requested_conditions(model, num, prompt_template)
    generator = torch.Generator(device=model.device).manual_seed(seed)
    images = [
        model.sample(len(given[start : start + batch_size]), condition=given[start : start + batch_size], generator=generator, **sampling)
        for start in track(
            range(0, num, batch_size), f"sampling {num} images for the judge", num, "img", count=lambda start: min(batch_size, num - start)
        )
    ]
    return torch.cat(images), expected


def check_conditional(model: Any) -> None:
    if not is_generator(model) or not is_conditional(model):
        raise UserError(
            f"{type(model).__name__} in --ckpt_path is not conditional; evaluate a CVAE or a class- or text-conditioned DDPM checkpoint."
        )


def check_same_vocabulary(model: Any, judge: Any) -> None:
    kind = judged_kind(model)
    mine = model.data_facts.class_names if kind == "class" else model.data_facts.attribute_names
    theirs = judge.data_facts.class_names if kind == "class" else judge.data_facts.attribute_names
    if tuple(mine) != tuple(theirs):
        raise UserError(
            f"the judge's {kind} names {list(theirs)} differ from the generator's {list(mine)}; train the judge on the same data."
        )


def judge_scores(
    model: Any,
    judge: Any,
    num: int,
    seed: int,
    batch_size: int = 256,
    group_names: list[str] | None = None,
    prompt_template: str | None = None,
    **sampling: Any,
) -> dict[str, float]:
    check_conditional(model)
    check_same_vocabulary(model, judge)
    images, conditions = sample_spread(model, num, seed, batch_size, prompt_template, **sampling)
    facts = model.data_facts
    return judge_accuracy(
        judge, images.to(judge.device), conditions, judged_kind(model), facts.class_names, facts.attribute_names, group_names
    )


def format_table(scores: dict[str, float]) -> str:
    width = max(len(key) for key in scores)
    return "\n".join(f"{key:<{width}}  {100 * value:6.1f} %" for key, value in scores.items())
