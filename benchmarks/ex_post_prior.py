"""Prior samples of a VAE from N(0, I), the ex-post Gaussian mixture and the diffusion prior, scored by a judge.

The judge (a classifier trained on the dataset's real images, configs/*_judge.yaml) gives each sample a
class probability; a sample a person would call an image of the dataset gets a confident judge, a blob does
not. Printed per prior: the judge's mean top-class probability, the share of samples it is ≥ 90 % sure
about, and how many classes the confident samples cover (a mixture that only reproduced a few modes would
cover few). Real validation images give the ceiling in the same run. FID and KID of each
prior's samples against the real validation images, in the judge's penultimate-layer features (as
``evaluate --feature_extractor JUDGE.ckpt`` computes them), and for the ceiling the training images
against the validation images.

When the checkpoint has no fitted mixture (trained with ``prior: standard`` or ``diffusion``) one is fitted here on
the posterior means of ``--fit_images`` training images of the config's dataset, as the gmm prior does in training;
likewise the diffusion prior (two-stage VAE) when the checkpoint was not trained with ``prior: diffusion``.

    python benchmarks/ex_post_prior.py --vae runs/quickstart/version_0/checkpoints/last.ckpt \
        --judge runs/shapes_judge/version_0/checkpoints/last.ckpt --config configs/quickstart.yaml [--svc]

``--svc`` adds a second judge of another kind (two_judges.py's RBF SVC on the config's real training pixels,
fit with calibrated probabilities): the three judge columns again, by the SVC.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
import yaml

from lightning_gen.checkpoints.loading import load_model
from lightning_gen.inference.datamodules import datamodule_from_config
from lightning_gen.metrics.extractors import build_extractor
from lightning_gen.metrics.formulas import fid, kid
from lightning_gen.models.denoising_prior import DenoisingDensity
from lightning_gen.models.latent_prior import LatentDensity, LatentPrior, MixtureDensity

CONFIDENT = 0.9


def config_with_root(config_path: str, root: str | None) -> dict[str, Any]:
    """The YAML config, with ``data.init_args.root`` set to ``root`` when given (for the datamodule and the SVC)."""
    config = yaml.safe_load(open(config_path))
    if root:
        config["data"].setdefault("init_args", {})["root"] = root
    return config


def datamodule_from(config: dict[str, Any], where: str) -> Any:
    datamodule = datamodule_from_config(config["data"], where)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


@torch.no_grad()
def judge_scores(judge: Any, images: torch.Tensor, classes: int) -> dict[str, float]:
    probabilities = torch.cat([judge(images[start : start + 256])["class"].softmax(1) for start in range(0, len(images), 256)])
    top, judged = probabilities.max(1)
    confident = top >= CONFIDENT
    values = [top.mean().item(), confident.float().mean().item(), float(len(judged[confident].unique())), float(classes)]
    return dict(zip(judge_scores_keys(), values))


def judge_scores_keys() -> list[str]:
    return ["mean top-class probability", f"share judged ≥ {CONFIDENT:.0%} sure", "classes covered by the sure ones", "of classes"]


def fitted_prior(model: Any, density: LatentDensity, codes: Any, seed: int, fitted_here: str) -> tuple[LatentPrior, str]:
    """The checkpoint's own prior when it holds a fitted density of this kind, else ``density`` fitted on ``codes()``."""
    stored = model.latent_prior
    if stored is not None and stored.fitted and type(stored.density) is type(density):
        return stored, "stored in the checkpoint"
    prior = LatentPrior(model.latent_dim, density=density)
    prior.fit(codes(), seed=seed)
    return prior, fitted_here


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
    parser.add_argument("--diffusion_steps", type=int, default=2000, help="Adam steps of a diffusion prior fitted here")
    parser.add_argument("--diffusion_width", type=int, default=None, help="its MLP width (default 4 × latent_dim)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--svc", action="store_true", help="score every source by the SVC judge as well")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model, judge = load_model(args.vae), load_model(args.judge)
    config = config_with_root(args.config, args.root)
    datamodule = datamodule_from(config, args.config)
    cache: list[torch.Tensor] = []

    def codes() -> torch.Tensor:
        """Posterior means of the first ``--fit_images`` training images, computed once."""
        if not cache:
            train = datamodule.train_set
            images = train.__getitems__(list(range(min(args.fit_images, len(train)))))["image"]
            with torch.no_grad():
                cache.append(torch.cat([model.encode(images[start : start + 256]) for start in range(0, len(images), 256)]))
        return cache[0]

    count = f"{min(args.fit_images, len(datamodule.train_set))} training images"
    mixture, mixture_how = fitted_prior(
        model,
        MixtureDensity(args.components, args.covariance),
        codes,
        args.seed,
        f"fitted here: {args.components} {args.covariance} components on {count}",
    )
    width = args.diffusion_width or 4 * model.latent_dim
    diffusion, diffusion_how = fitted_prior(
        model,
        DenoisingDensity(model.latent_dim, args.diffusion_steps, width),
        codes,
        args.seed,
        f"fitted here: {args.diffusion_steps} steps, width {width}, on {count}",
    )
    classes = len(judge.data_facts.class_names)
    judges = {"": judge}
    if args.svc:
        from two_judges import svc_judge  # scikit-learn only when asked for

        judges["SVC: "] = svc_judge(config, classes, probability=True)

    def judged(images: torch.Tensor) -> dict[str, float]:
        return {f"{prefix}{key}": value for prefix, one in judges.items() for key, value in judge_scores(one, images, classes).items()}

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

    results = {"real training images (ceiling)": {**judged(training), **distance(training)}}
    standard = LatentPrior(model.latent_dim)  # never fitted: N(0, I)
    for prior, label in (
        (standard, "z ~ N(0, I)"),
        (mixture, f"z ~ Gaussian mixture ({mixture_how})"),
        (diffusion, f"z ~ diffusion prior, DDIM 50 steps ({diffusion_how})"),
    ):
        with torch.no_grad():
            latents = prior.sample(args.num, torch.Generator().manual_seed(args.seed), "cpu")
            samples = torch.cat([model.decode(latents[start : start + 256]) for start in range(0, len(latents), 256)])
        results[label] = {**judged(samples), **distance(samples)}
    keys = [key for key in judge_scores_keys() if key != "of classes"]
    print(
        f"VAE {args.vae}, judge {args.judge}, {args.num} samples per prior; FID/KID against {len(real)} validation images "
        f"in the judge's features ({features.name})"
    )
    columns = [f"{prefix}{key}" for prefix in judges for key in keys]
    print("| source | " + " | ".join(columns) + " | FID | KID (± std over subsets) |")
    print("| --- |" + " ---: |" * (len(columns) + 2))
    for label, scores in results.items():
        cells = []
        for prefix in judges:
            mean, sure, covered = (scores[f"{prefix}{key}"] for key in keys)
            cells += [f"{100 * mean:.1f} %", f"{100 * sure:.1f} %", f"{covered:.0f} / {classes}"]
        cells += [f"{scores['FID']:.1f}", f"{scores['KID']:.1f} ± {scores['KID std']:.1f}"]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
