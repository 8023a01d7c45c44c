"""A conditional generator's samples judged by two judges of different kinds, and both judges on real images.

Judge 1 is the set's CNN judge checkpoint (e.g. ``configs/shapes_judge.yaml``); judge 2 is scikit-learn's RBF
``SVC`` fit on the flattened pixels of the real training images that ``--config``'s datamodule serves (the
same split and resolution the generator trained on). A generator that only fools one kind of classifier
shows up as a gap between the two columns; each judge's accuracy on the real validation images says how far
to trust it.

    python benchmarks/two_judges.py --ckpt_path runs/shapes_ddpm/version_0/checkpoints/last.ckpt \\
        --judge runs/shapes_judge/version_0/checkpoints/last.ckpt --config configs/shapes_ddpm.yaml \\
        --num 480 --steps 50 --guidance_scale 3 --group_names colour,shape

The samples are ``lightning_gen evaluate``'s (``sample_spread``: conditions spread evenly over the classes,
seed 0), so the CNN column equals ``evaluate --judge`` with the same options.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from real_data_quality import fit_svc, real_pixels
from torch import nn


class SVCJudge(nn.Module):
    """An sklearn classifier on flattened pixels, answering as a judge does: ``{"class": logits}`` (one-hot)."""

    def __init__(self, svc: Any, num_classes: int):
        super().__init__()
        self.svc, self.num_classes = svc, num_classes

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        predicted = torch.from_numpy(self.svc.predict(images.float().flatten(1).cpu().numpy())).long()
        return {"class": nn.functional.one_hot(predicted, self.num_classes).float()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", type=Path, required=True, help="the conditional generator (CVAE or class/text DDPM)")
    parser.add_argument("--judge", type=Path, required=True, help="the CNN judge checkpoint trained on the same data")
    parser.add_argument("--config", type=Path, required=True, help="a config whose data: section serves the real images")
    parser.add_argument("--num", type=int, default=480)
    parser.add_argument("--batch_size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--guidance_scale", default=None, help="one value, or several (2,3): one table each, the same SVC")
    parser.add_argument("--prompt_template", default=None, help="for a text model, e.g. 'a large {name}'")
    parser.add_argument("--group_names", default=None, help="e.g. colour,shape: accuracy of each word of the class names")
    args = parser.parse_args()

    from lightning_gen.inference.loading import load_model
    from lightning_gen.inference.sampling import options_of, sampling_kwargs
    from lightning_gen.metrics.judged import check_conditional, check_same_vocabulary, judged_kind, sample_spread

    torch.set_grad_enabled(False)
    model, cnn = load_model(args.ckpt_path).eval(), load_model(args.judge).eval()
    check_conditional(model)
    check_same_vocabulary(model, cnn)
    if judged_kind(model) != "class":
        raise SystemExit("two_judges.py scores class-conditional samples; judge an attribute-conditioned model with evaluate --judge.")
    config = yaml.safe_load(args.config.read_text())
    started = time.perf_counter()
    print(f"fitting the SVC judge on the real training images of {args.config} …", flush=True)
    svc = fit_svc(config)  # its accuracy on the real validation images is scored below, with the CNN's
    svc_seconds = time.perf_counter() - started
    facts = model.data_facts
    judges = {"CNN judge": cnn, "SVC on pixels": SVCJudge(svc, len(facts.class_names))}
    groups = args.group_names.split(",") if args.group_names else None

    val_x, val_y = real_pixels(config, "val")
    real = torch.from_numpy(val_x).view(len(val_x), -1, facts.image_size, facts.image_size)
    scales = [float(value) for value in args.guidance_scale.split(",")] if args.guidance_scale else [None]
    keys = ["overall", *(f"group/{group}" for group in groups or [])]
    print(f"real validation images: {len(real)} from {args.config}; SVC fit {svc_seconds:.0f} s")
    on_real = {name: scores(judge, real, torch.from_numpy(val_y), facts, groups) for name, judge in judges.items()}
    for scale in scales:
        sampling = sampling_kwargs(model, options_of({"steps": args.steps, "guidance_scale": scale}))
        started = time.perf_counter()
        images, expected = sample_spread(model, args.num, args.seed, args.batch_size, args.prompt_template, **sampling)
        seconds = time.perf_counter() - started
        options = ", ".join(f"{key} {value}" for key, value in sampling.items()) or "the model's defaults"
        print(f"\n{args.num} samples of {args.ckpt_path} ({options}, seed {args.seed}; {seconds:.0f} s)")
        print("| judge | " + " | ".join(f"real val: {key}" for key in keys) + " | " + " | ".join(f"samples: {key}" for key in keys) + " |")
        print("|---" * (1 + 2 * len(keys)) + "|")
        for name, judge in judges.items():
            on_samples = scores(judge, images, expected, facts, groups)
            cells = [f"{100 * on_real[name][key]:.1f} %" for key in keys] + [f"{100 * on_samples[key]:.1f} %" for key in keys]
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


def scores(judge: nn.Module, pixels: torch.Tensor, labels: torch.Tensor, facts: Any, groups: list[str] | None) -> dict[str, float]:
    from lightning_gen.models.judge import judge_accuracy

    return judge_accuracy(judge, pixels, labels, "class", facts.class_names, facts.attribute_names, groups)


if __name__ == "__main__":
    main()
