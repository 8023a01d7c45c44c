"""Prior samples of a VAE from N(0, I) against samples from the ex-post Gaussian mixture, scored by a judge.

The judge (a classifier trained on the dataset's real images, configs/*_judge.yaml) gives each sample a
class probability; a sample a person would call an image of the dataset gets a confident judge, a blob does
not. Printed per prior: the judge's mean top-class probability, the share of samples it is ≥ 90 % sure
about, and how many classes the confident samples cover (a mixture that only reproduced a few modes would
cover few). Real validation images give the ceiling in the same run. FID and KID of each
prior's samples against the real validation images, in the judge's penultimate-layer features (as
``evaluate --feature_extractor JUDGE.ckpt`` computes them), and for the ceiling the training images
against the validation images.

When the checkpoint has no fitted mixture (trained with ``prior: standard``) one is fitted here on the
posterior means of ``--fit_images`` training images of the config's dataset, as the gmm prior does in training.

    python benchmarks/ex_post_prior.py --vae runs/quickstart/version_0/checkpoints/last.ckpt \
        --judge runs/shapes_judge/version_0/checkpoints/last.ckpt --config configs/quickstart.yaml
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

import torch
import yaml

from lightning_gen.checkpoints.loading import load_model
from lightning_gen.metrics.extractors import build_extractor
from lightning_gen.metrics.formulas import fid, kid
from lightning_gen.models.latent_prior import LatentPrior

CONFIDENT = 0.9


def datamodule_from(config_path: str, root: str | None) -> Any:
    data = yaml.safe_load(open(config_path))["data"]
    module_name, _, class_name = data["class_path"].rpartition(".")
    init_args = dict(data.get("init_args", {}))
    if root:
        init_args["root"] = root
    datamodule = getattr(importlib.import_module(module_name), class_name)(**init_args)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


@torch.no_grad()
def judge_scores(judge: Any, images: torch.Tensor, classes: int) -> dict[str, float]:
    probabilities = torch.cat([judge(images[start : start + 256])["class"].softmax(1) for start in range(0, len(images), 256)])
    top, judged = probabilities.max(1)
    confident = top >= CONFIDENT
    return {
        "mean top-class probability": top.mean().item(),
        f"share judged ≥ {CONFIDENT:.0%} sure": confident.float().mean().item(),
        "classes covered by the sure ones": float(len(judged[confident].unique())),
        "of classes": float(classes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", required=True, help="an unconditional VAE / β-VAE checkpoint")
    parser.add_argument("--judge", required=True, help="a Judge checkpoint trained on the same dataset's real images")
    parser.add_argument("--config", required=True, help="the config the VAE was trained with (for its dataset)")
    parser.add_argument("--root", default=None, help="override data.init_args.root")
    parser.add_argument("--num", type=int, default=1000, help="samples per prior")
    parser.add_argument("--fit_images", type=int, default=4096)
    parser.add_argument("--components", type=int, default=20)
    parser.add_argument("--covariance", default="full", choices=["full", "diag"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model, judge = load_model(args.vae), load_model(args.judge)
    datamodule = datamodule_from(args.config, args.root)
    how = "stored in the checkpoint"
    if model.latent_prior is None or model.latent_prior.mixture is None:
        train = datamodule.train_set
        rows = list(range(min(args.fit_images, len(train))))
        images = train.__getitems__(rows)["image"]
        codes = torch.cat([model.encode(images[start : start + 256]) for start in range(0, len(images), 256)])
        model.latent_prior = LatentPrior(model.latent_dim, args.components, args.covariance)
        model.latent_prior.fit(codes, seed=args.seed)
        how = f"fitted here: {args.components} {args.covariance} components on {len(rows)} training images"
    classes = len(judge.data_facts.class_names)
    val = datamodule.val_set
    order = torch.Generator().manual_seed(args.seed)
    real = val.__getitems__(torch.randperm(len(val), generator=order)[: args.num].tolist())["image"]  # splits may be sorted by class
    features = build_extractor(args.judge)
    real_features = features(real)
    train = datamodule.train_set
    training = train.__getitems__(torch.randperm(len(train), generator=order)[: args.num].tolist())["image"]

    def distance(images: torch.Tensor) -> dict[str, float]:
        fake = features(images)
        mean, std, _ = kid(real_features, fake)
        return {"FID": fid(real_features, fake), "KID": mean, "KID std": std}

    results = {"real training images (ceiling)": {**judge_scores(judge, training, classes), **distance(training)}}
    for prior, label in (("standard", "z ~ N(0, I)"), ("fitted", f"z ~ Gaussian mixture ({how})")):
        samples = model.sample(args.num, generator=torch.Generator().manual_seed(args.seed), prior=prior)
        results[label] = {**judge_scores(judge, samples, classes), **distance(samples)}
    keys = list(next(iter(results.values())))
    print(
        f"VAE {args.vae}, judge {args.judge}, {args.num} samples per prior; FID/KID against {len(real)} validation images "
        f"in the judge's features ({features.name})"
    )
    print("| source | " + " | ".join(key for key in keys if key not in ("of classes", "KID std")) + " (± std over subsets) |")
    print("| --- |" + " ---: |" * (len(keys) - 2))
    for label, scores in results.items():
        cells = [
            f"{100 * scores[keys[0]]:.1f} %",
            f"{100 * scores[keys[1]]:.1f} %",
            f"{scores[keys[2]]:.0f} / {scores[keys[3]]:.0f}",
            f"{scores['FID']:.1f}",
            f"{scores['KID']:.1f} ± {scores['KID std']:.1f}",
        ]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
