"""Judged class accuracy of an exported folder: how often a Judge trained on real images finds the class each image was asked for.

    python benchmarks/judge_folder.py --synthetic runs/synthetic/shapes_ddpm --judge runs/shapes_judge/version_0/checkpoints/last.ckpt \
        --group_names colour,shape

Reads the folder as `downstream` does (metadata.jsonl class names, the judge's image size) and
prints overall, per word group (shapes: colour, shape) and the worst classes. ``--svc_config CONFIG`` adds a
second judge of another kind (two_judges.py's RBF SVC on the real training pixels of CONFIG's data), a column beside.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from lightning_gen.checkpoints.loading import load_model  # noqa: E402
from lightning_gen.models.judge import judge_accuracy  # noqa: E402
from lightning_gen.synthetic.folder import read_image_folder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", required=True, help="an export folder")
    parser.add_argument("--judge", required=True, help="a Judge checkpoint trained on the real classes")
    parser.add_argument("--group_names", default=None, help="names of the class-name word groups, e.g. colour,shape")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--svc_config", default=None, help="a config whose data: serves the real images: adds the SVC judge")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    judge = load_model(args.judge, "cpu")
    facts = judge.data_facts
    images, labels = read_image_folder(args.synthetic, facts.class_names, facts.image_size, facts.channels)
    groups = args.group_names.split(",") if args.group_names else None
    judges = {"CNN judge": judge}
    if args.svc_config:
        from two_judges import svc_judge  # scikit-learn only when asked for

        judges["SVC on pixels"] = svc_judge(args.svc_config, len(facts.class_names))
    pixels = images.float() / 255
    scores = {name: judge_accuracy(one, pixels, labels, "class", facts.class_names, group_names=groups) for name, one in judges.items()}
    also = f" and an SVC on {args.svc_config}" if args.svc_config else ""
    print(f"{len(labels)} images of {args.synthetic}, judged by {args.judge}{also}")
    print("| score | " + " | ".join(judges) + " |")
    print("| --- |" + " --- |" * len(judges))
    first = scores["CNN judge"]
    for key in ["overall", *sorted(key for key in first if key.startswith("group/"))]:
        print(f"| {key} | " + " | ".join(f"{100 * scores[name][key]:.1f} %" for name in judges) + " |")
    for name in judges:
        worst = sorted((value, key) for key, value in scores[name].items() if key.startswith("class/"))[:3]
        print(f"worst classes, {name}: " + ", ".join(f"{key[6:]} {100 * value:.0f} %" for value, key in worst))


if __name__ == "__main__":
    main()
