"""``python -m lightning_gen evaluate --ckpt_path GEN --judge JUDGE [--num N] [--seed S] [--out scores.json]``.

Samples N images from a conditional generator with conditions spread evenly over its vocabulary
(class i, or attribute i alone), lets a judge checkpoint classify them and prints how often the judge
agrees with the request: overall, per class / attribute, and per word group of multi-word class
names (shapes: ``red circle`` → colour, shape).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch
from jsonargparse import ArgumentParser, Namespace

from lightning_gen.commands.common import load_model, resolve_device
from lightning_gen.commands.sample import SAMPLING_OPTIONS, sampling_kwargs
from lightning_gen.errors import UserError
from lightning_gen.models.judge import judge_accuracy


DESCRIPTION = "measure a checkpoint: judge accuracy of conditional samples"


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--ckpt_path", type=str, required=True, help="a conditional generator's .ckpt file")
    parser.add_argument("--judge", type=str, required=True, help="a Judge .ckpt trained on the same dataset")
    parser.add_argument("--num", type=int, default=512, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="noise seed")
    parser.add_argument("--batch_size", type=int, default=256, help="samples generated at once")
    parser.add_argument("--group_names", type=Optional[str], default=None, help="comma-separated names of class-name word groups, e.g. colour,shape")
    parser.add_argument("--out", type=Optional[str], default=None, help="JSON file to write the scores to")
    parser.add_argument("--device", type=str, default="auto", help="auto, cpu or cuda")
    parser.add_argument("--steps", type=Optional[int], default=None, help="sampling steps (diffusion models)")
    parser.add_argument("--guidance_scale", type=Optional[float], default=None, help="classifier-free guidance scale")
    parser.add_argument("--sampler", type=Optional[str], default=None, help="ddim or ddpm (diffusion models)")
    parser.add_argument("--prompt_template", type=Optional[str], default=None, help="text models: prompt per class, e.g. 'a large {name}'")


def judged_kind(model: Any) -> str:
    """What the judge checks: a text model asked for a class's prompt is judged on that class."""
    return "attributes" if model.condition_kind == "attributes" else "class"


def requested_conditions(model: Any, num: int, prompt_template: str | None) -> tuple[Any, Any]:
    """(what the judge expects, what the model is given), spread evenly over the vocabulary."""
    if model.condition_kind != "text":
        conditions = model.spread_conditions(num)
        return conditions, conditions
    if not prompt_template or "{name}" not in prompt_template:
        raise UserError("a text-conditioned model needs --prompt_template with {name}, e.g. 'a large {name}', to turn each class name into a prompt.")
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
        for start in range(0, num, batch_size)
    ]
    return torch.cat(images), expected


def check_conditional(model: Any) -> None:
    if getattr(model, "spread_conditions", None) is None or getattr(model, "condition_kind", "none") == "none":
        raise UserError(
            f"{type(model).__name__} in --ckpt_path is not conditional; evaluate a CVAE or a class- or text-conditioned DDPM checkpoint."
        )


def check_same_vocabulary(model: Any, judge: Any) -> None:
    kind = judged_kind(model)
    mine = model.data_facts.class_names if kind == "class" else model.data_facts.attribute_names
    theirs = judge.data_facts.class_names if kind == "class" else judge.data_facts.attribute_names
    if tuple(mine) != tuple(theirs):
        raise UserError(f"the judge's {kind} names {list(theirs)} differ from the generator's {list(mine)}; train the judge on the same data.")


def evaluate(
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


def run(args: Namespace) -> None:
    if args.num < 1:
        raise UserError(f"--num must be at least 1, got {args.num}.")
    device = resolve_device(args.device)
    model, judge = load_model(args.ckpt_path, device), load_model(args.judge, device)
    group_names = [name.strip() for name in args.group_names.split(",")] if args.group_names else None
    check_conditional(model)
    sampling = sampling_kwargs(model, {key: args[key] for key in SAMPLING_OPTIONS})
    scores = evaluate(model, judge, args.num, args.seed, args.batch_size, group_names, args.prompt_template, **sampling)
    options = "".join(f", {key} {value}" for key, value in sampling.items())
    print(f"Judged {args.num} samples of {args.ckpt_path} (condition: {model.condition_kind}{options})")
    print(format_table(scores))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(scores, indent=2))
        print(f"Wrote {out}")
