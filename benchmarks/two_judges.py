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
    """An sklearn classifier on flattened pixels, answering as a judge does: ``{"class": logits}`` — one-hot
    predictions, or log-probabilities when the classifier has ``predict_proba`` (fit_svc(..., probability=True);
    softmax gives them back)."""

    def __init__(self, svc: Any, num_classes: int):
        super().__init__()
        self.svc, self.num_classes = svc, num_classes

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        pixels = images.float().flatten(1).cpu().numpy()
        if hasattr(self.svc, "predict_proba"):  # an SVC has it only when calibrated
            probabilities = torch.zeros(len(pixels), self.num_classes, dtype=torch.float64)
            probabilities[:, torch.from_numpy(self.svc.classes_).long()] = torch.from_numpy(self.svc.predict_proba(pixels))
            return {"class": probabilities.clamp_min(1e-12).log().float()}
        predicted = torch.from_numpy(self.svc.predict(pixels)).long()
        return {"class": nn.functional.one_hot(predicted, self.num_classes).float()}


def svc_judge(config: str | Path | dict, num_classes: int, probability: bool = False) -> nn.Module:
    """The second judge: an RBF SVC on the real training pixels that ``config``'s data: section serves."""
    loaded = config if isinstance(config, dict) else yaml.safe_load(Path(config).read_text())
    return SVCJudge(fit_svc(loaded, probability), num_classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ckpt_path", type=Path, nargs="+", required=True, help="the conditional generator(s) (CVAE or class/text DDPM): one table each"
    )
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
    cnn = load_model(args.judge).eval()
    models = [(path, load_model(path).eval()) for path in args.ckpt_path]
    for _, model in models:
        check_conditional(model)
        check_same_vocabulary(model, cnn)
        if judged_kind(model) != "class":
            raise SystemExit("two_judges.py scores class-conditional samples; judge an attribute-conditioned model with evaluate --judge.")
    config = yaml.safe_load(args.config.read_text())
    started = time.perf_counter()
    print(f"fitting the SVC judge on the real training images of {args.config} …", flush=True)
    facts = models[0][1].data_facts
    judges = {"CNN judge": cnn, "SVC on pixels": svc_judge(config, len(facts.class_names))}
    svc_seconds = time.perf_counter() - started
    groups = args.group_names.split(",") if args.group_names else None

    val_x, val_y = real_pixels(config, "val")
    real = torch.from_numpy(val_x).view(len(val_x), -1, facts.image_size, facts.image_size)
    scales = [float(value) for value in args.guidance_scale.split(",")] if args.guidance_scale else [None]
    keys = ["overall", *(f"group/{group}" for group in groups or [])]
    print(f"real validation images: {len(real)} from {args.config}; SVC fit {svc_seconds:.0f} s")
    on_real = {name: scores(judge, real, torch.from_numpy(val_y), facts, groups) for name, judge in judges.items()}
    for path, model in models:
        for scale in scales:
            sampling = sampling_kwargs(model, options_of({"steps": args.steps, "guidance_scale": scale}))
            started = time.perf_counter()
            images, expected = sample_spread(model, args.num, args.seed, args.batch_size, args.prompt_template, **sampling)
            seconds = time.perf_counter() - started
            options = ", ".join(f"{key} {value}" for key, value in sampling.items()) or "the model's defaults"
            print(f"\n{args.num} samples of {path} ({options}, seed {args.seed}; {seconds:.0f} s)")
            print(
                "| judge | " + " | ".join(f"real val: {key}" for key in keys) + " | " + " | ".join(f"samples: {key}" for key in keys) + " |"
            )
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
