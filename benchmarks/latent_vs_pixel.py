"""Pixel DDPM vs latent diffusion vs flow matching (pixel and latent) on one real colour set, same wall-clock budget.

One run, one dataset (default: the Debian icon-theme colour set at 64×64, ``scripts/build_colour_set.py``), the
shipped configs at 64×64 (``folder_ddpm``, ``folder_flow_matching``, ``folder_autoencoder``, ``folder_latent_ddpm``
and its flow-matching variant), each trained through the CLI for the same wall-clock budget (``--budget``
minutes; for latent diffusion the autoencoder's training time is counted in: its UNet trains for
``budget − autoencoder``). Every fit validates only at its end (the time goes to training), EMA as configured.

Scored on ``--num`` class-conditional samples (seed 0) whose classes are the test split's labels (so the sampled
class mix is the real one):

- FID and KID against the training images in a real Inception (``--inception``: the fid-helper TorchScript
  adapter, docs/evaluation.md); the floor is the real held-out test split against the same training images, at
  the same N;
- judged class accuracy by two judges of different kinds: a CNN judge trained here (``configs/folder_judge.yaml``
  at 64×64) and an RBF SVC on the training pixels (at 32×32); their accuracy on the real test images is the ceiling;
- sampling seconds per 64 images (the configured sampler: DDIM 50 for diffusion, Euler 10 for flow matching).

Latent runs save a checkpoint every ``--checkpoint_minutes`` of training; each is scored, which gives the training
time at which latent diffusion first reaches the pixel DDPM's final FID. The latent DDPM keeps post-hoc EMA tracks
(σ_rel 0.05 and 0.10); its EMA is rebuilt at ``--sigma_rels`` and scored beside the configured fixed decay.

The β-VAE baselines: the seed-003 recipe (``cats_beta0005.yaml`` on this folder) and ``folder_vae.yaml`` at
64×64, trained for ``--vae_budget`` minutes: reconstruction PSNR/SSIM on the test images, and unconditional sample
FID with three priors: N(0, I), a 20-component GMM and the diffusion prior, both fitted after training on the
posterior means of the training images.

    python scripts/build_colour_set.py --out data/colour64
    python benchmarks/fid_helper_inception.py --out inception_fid_helper.pt
    python benchmarks/latent_vs_pixel.py --root data/colour64 --inception inception_fid_helper.pt --budget 12

Results go to ``--runs``/results.json row by row; a rerun skips the fits and scores already there (``--fresh``
redoes them), so an interrupted benchmark continues.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.real_data_quality import base_config, fit  # noqa: E402

BATCH = 64


def minutes(value: float) -> str:
    """Lightning's max_time string (DD:HH:MM:SS) for a number of minutes."""
    seconds = round(value * 60)
    return f"00:{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# row → (config, model.init_args overrides, its part of the budget: "pixel" | "latent" | "autoencoder" | "vae")
DIFFUSION_ROWS: dict[str, tuple[str, dict[str, Any], str]] = {
    "pixel DDPM (folder_ddpm)": ("configs/folder_ddpm.yaml", {}, "pixel"),
    "pixel + flow matching (folder_flow_matching)": ("configs/folder_flow_matching.yaml", {}, "pixel"),
    "latent diffusion (folder_latent_ddpm)": ("configs/folder_latent_ddpm.yaml", {}, "latent"),
    "latent + flow matching (folder_latent_ddpm, objective flow_matching)": (
        "configs/folder_latent_ddpm.yaml",
        {
            "objective": "flow_matching",
            "min_snr_gamma": None,
            "sampler": "euler",
            "sampling_steps": 10,
            "validation_steps": 10,
            "flow_time_distribution": "logit_normal",
        },
        "latent",
    ),
}
VAE_ROWS: dict[str, str] = {
    "β-VAE, seed 003 recipe (cats_beta0005)": "configs/cats_beta0005.yaml",
    "β-VAE (folder_vae)": "configs/folder_vae.yaml",
}


class Results:
    """results.json: one entry per key, written after each so an interrupted run keeps what it measured."""

    def __init__(self, path: Path, fresh: bool):
        self.path = path
        self.values: dict[str, Any] = {} if fresh or not path.exists() else json.loads(path.read_text())

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def put(self, key: str, value: Any) -> Any:
        self.values[key] = value
        self.path.write_text(json.dumps(self.values, indent=1))
        return value


# -- data ---------------------------------------------------------------------------------------------------
@functools.cache
def read_split(root: Path, split: str) -> tuple[torch.Tensor, list[str]]:
    """Every PNG of ``root/split/<class>/`` as N×3×H×W in [0, 1] and its class folder's name, in sorted order
    (read once per split: the SVC and the scorer share it; callers do not modify it)."""
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    files = sorted((root / split).glob("*/*.png"))
    images = torch.stack([pil_to_tensor(Image.open(path).convert("RGB")) for path in files]).float() / 255.0
    return images, [path.parent.name for path in files]


def fit_config(
    config_path: str, root: Path, runs: Path, name: str, budget_minutes: float, model_overrides: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    config = base_config(config_path, root, runs, name)
    config["data"]["init_args"].update({"image_size": 64, "val_fraction": 0.1})
    config["model"]["init_args"].update(model_overrides)
    trainer = config["trainer"]
    trainer.pop("max_epochs", None)
    trainer.update({"max_epochs": 100000, "max_time": minutes(budget_minutes), "check_val_every_n_epoch": 100000})
    trainer["callbacks"] = [{"class_path": "benchmarks.latent_vs_pixel.TrainingClock"}]
    config.setdefault("images", {})["every_n_minutes"] = None  # validate once, at the end
    for section, values in extra.items():
        config.setdefault(section, {}).update(values)
    return config


def timed_fit(config: dict[str, Any], name: str, runs: Path) -> dict[str, Any]:
    started = time.perf_counter()
    run = fit(config, name, runs, runs / f"{name}.log")
    wall = time.perf_counter() - started
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True, mmap=True)
    steps = int(checkpoint["global_step"])
    trained = training_seconds(checkpoint)
    return {"run": str(run), "steps": steps, "train_seconds": trained, "s_per_step": trained / max(steps, 1), "process_seconds": wall}


class TrainingClock(pl.Callback):
    """Seconds spent in training batches (step, backward, optimizer, batch hooks; not validation, not start-up),
    kept in every checkpoint (``callbacks["TrainingClock"]``), so a periodic checkpoint knows its training time."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._began: float | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        self._began = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._began is not None:
            self.seconds += time.perf_counter() - self._began
            self._began = None

    def state_dict(self) -> dict[str, float]:
        return {"seconds": self.seconds}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self.seconds = float(state_dict["seconds"])


def training_seconds(checkpoint: dict[str, Any]) -> float:
    return float(checkpoint["callbacks"]["TrainingClock"]["seconds"])


# -- scoring ------------------------------------------------------------------------------------------------
def cached_features(extractor: Any, images: torch.Tensor, folder: Path, cache: Path) -> torch.Tensor:
    """The extractor's features of ``images`` (the PNGs of ``folder``), kept in ``cache`` keyed by the extractor's
    identity (name + weights hash) and the folder's file names and sizes."""
    key = [
        extractor.identity,
        str(folder.resolve()),
        sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.glob("*/*.png")),
    ]
    if cache.exists():
        kept = torch.load(cache, weights_only=True)
        if kept["key"] == json.dumps(key):
            return kept["features"]
    features = extractor(images, batch_size=32, progress="Inception features")
    torch.save({"key": json.dumps(key), "features": features}, cache)
    return features


class Scorer:
    """FID/KID in the given Inception against the training images; two judges; the real floor and ceiling."""

    def __init__(self, root: Path, inception: str, judge_path: Path, svc: Any, num: int, features_cache: Path):
        from lightning_gen.checkpoints.loading import load_model
        from lightning_gen.metrics.extractors import build_extractor

        self.extractor = build_extractor(inception)
        train, _ = read_split(root, "train")
        self.test, self.test_names = read_split(root, "test")
        self.num = min(num, len(self.test))
        self.train_features = cached_features(self.extractor, train, root / "train", features_cache)
        self.judge = load_model(judge_path).eval()
        self.svc = svc

    def fid_kid(self, images: torch.Tensor) -> dict[str, float]:
        from lightning_gen.metrics.formulas import fid, kid

        features = self.extractor(images, batch_size=32)
        kid_mean, kid_std, _ = kid(self.train_features, features)
        return {"fid": fid(self.train_features, features), "kid": kid_mean, "kid_std": kid_std}

    def judged(self, images: torch.Tensor, names: list[str]) -> dict[str, float]:
        from lightning_gen.models.judge import judge_accuracy

        class_names = list(self.judge.data_facts.class_names)
        expected = torch.tensor([class_names.index(name) for name in names])
        cnn = judge_accuracy(self.judge, images, expected, "class", class_names)
        right = torch.from_numpy(self.svc.predict(svc_pixels(images))) == expected
        present = [index for index in range(len(class_names)) if bool((expected == index).any())]
        return {
            "judge_cnn": float(cnn["overall"]),
            "judge_svc": float(right.float().mean()),
            # the mean of the per-class accuracies: 25 % by chance on 4 classes, whatever the class mix
            "judge_cnn_balanced": sum(cnn[f"class/{class_names[index]}"] for index in present) / len(present),
            "judge_svc_balanced": sum(float(right[expected == index].float().mean()) for index in present) / len(present),
        }

    def floor(self) -> dict[str, float]:
        images, names = self.test[: self.num], self.test_names[: self.num]
        return {**self.fid_kid(images), **self.judged(images, names), "n": len(images)}

    @torch.no_grad()
    def samples(self, model: Any) -> dict[str, Any]:
        """``num`` samples, classes = the test split's labels, seed 0, in batches of 64 (the first batch is timed)."""
        names = self.test_names[: self.num]
        class_names = list(model.data_facts.class_names)
        labels = torch.tensor([class_names.index(name) for name in names])
        generator = torch.Generator().manual_seed(0)
        parts, first_batch_seconds = [], None
        for start in range(0, len(labels), BATCH):
            began = time.perf_counter()
            parts.append(
                model.sample(len(labels[start : start + BATCH]), condition=labels[start : start + BATCH], generator=generator).cpu()
            )
            if first_batch_seconds is None:
                first_batch_seconds = (time.perf_counter() - began) * BATCH / len(parts[0])
        images = torch.cat(parts).float().clamp(0, 1)
        return {"images": images, "seconds_per_64": first_batch_seconds, **self.fid_kid(images), **self.judged(images, names)}

    @torch.no_grad()
    def unconditional(self, model: Any, prior: str) -> dict[str, float]:
        generator = torch.Generator().manual_seed(0)
        images = torch.cat(
            [model.sample(min(BATCH, self.num - start), generator=generator, prior=prior) for start in range(0, self.num, BATCH)]
        )
        return self.fid_kid(images.float().clamp(0, 1))


def scored(scorer: Scorer, checkpoint: Path | str, grid: Path | None = None) -> dict[str, Any]:
    from torchvision.utils import save_image

    from lightning_gen.checkpoints.loading import load_model

    model = load_model(checkpoint).eval()
    result = scorer.samples(model)
    images = result.pop("images")
    if grid is not None:
        save_image(images[:64], grid, nrow=8)
    return result


def train_judge(root: Path, runs: Path) -> Path:
    config = base_config("configs/folder_judge.yaml", root, runs, "judge")
    config["data"]["init_args"]["image_size"] = 64
    run = fit(config, "judge", runs, runs / "judge.log")
    return run / "checkpoints" / "last.ckpt"


def svc_pixels(images: torch.Tensor) -> Any:
    """The SVC's input: the images at 32×32 (area-averaged), flattened."""
    return torch.nn.functional.interpolate(images.float(), size=(32, 32), mode="area").flatten(1).numpy()


def train_svc(root: Path) -> tuple[Any, float]:
    """The second judge: an RBF SVC on the training pixels at 32×32; its accuracy on the real test images."""
    from sklearn.svm import SVC

    train, train_names = read_split(root, "train")
    test, test_names = read_split(root, "test")
    svc = SVC(kernel="rbf", gamma="scale", C=10.0).fit(svc_pixels(train), train_names)
    return svc, float((svc.predict(svc_pixels(test)) == test_names).mean())


class NameSVC:
    """The SVC predicting class indices in the judge's class order (Scorer compares indices)."""

    def __init__(self, svc: Any, class_names: list[str]):
        self.svc, self.index = svc, {name: i for i, name in enumerate(class_names)}

    def predict(self, pixels: Any) -> Any:
        import numpy as np

        return np.array([self.index[name] for name in self.svc.predict(pixels)])


# -- the rows -----------------------------------------------------------------------------------------------
def periodic_checkpoints(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob("periodic-step*.ckpt"))


def diffusion_rows(args: argparse.Namespace, results: Results, scorer: Scorer, autoencoder: dict[str, Any]) -> None:
    latent_minutes = args.budget - autoencoder["train_seconds"] / 60
    for row, (config_path, overrides, kind) in DIFFUSION_ROWS.items():
        name = row.split(" (")[0].replace(" ", "_").replace("+", "plus")
        if results.get(f"fit/{row}") is None:
            extra: dict[str, Any] = {}
            model_overrides = dict(overrides)
            budget = args.budget
            if kind == "latent":
                model_overrides["autoencoder"] = autoencoder["checkpoint"]
                budget = latent_minutes
                extra["checkpointing"] = {"every_n_minutes": args.checkpoint_minutes}
                if overrides.get("objective") is None:
                    extra["ema"] = {"post_hoc": True, "sigma_rels": [0.05, 0.10], "snapshot_every_n_steps": args.snapshot_every}
            print(f"# fitting {row} for {budget:.2f} min", flush=True)
            config = fit_config(config_path, args.root, args.runs, name, budget, model_overrides, extra)
            results.put(f"fit/{row}", timed_fit(config, name, args.runs))
        trained = results.get(f"fit/{row}")
        run = Path(trained["run"])
        if results.get(f"score/{row}") is None:
            print(f"# scoring {row}", flush=True)
            results.put(f"score/{row}", scored(scorer, run / "checkpoints" / "last.ckpt", args.runs / f"{name}_samples.png"))
        if kind == "latent" and results.get(f"curve/{row}") is None:
            curve = []
            for path in periodic_checkpoints(run):
                checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                curve.append(
                    {"step": int(checkpoint["global_step"]), "train_seconds": training_seconds(checkpoint), **scored(scorer, path)}
                )
            results.put(f"curve/{row}", curve)
        if kind == "latent" and overrides.get("objective") is None and results.get(f"posthoc/{row}") is None:
            from lightning_gen.checkpoints.posthoc_ema import load_posthoc_model

            rows = []
            for sigma_rel in args.sigma_rels:
                result = scorer.samples(load_posthoc_model(run, sigma_rel))
                result.pop("images")
                rows.append({"sigma_rel": sigma_rel, **result})
            results.put(f"posthoc/{row}", rows)


def autoencoder_row(args: argparse.Namespace, results: Results, scorer: Scorer) -> dict[str, Any]:
    if results.get("fit/autoencoder") is None:
        config = fit_config("configs/folder_autoencoder.yaml", args.root, args.runs, "autoencoder", args.autoencoder_budget, {}, {})
        trained = timed_fit(config, "autoencoder", args.runs)
        trained["checkpoint"] = str(Path(trained["run"]) / "checkpoints" / "last.ckpt")
        results.put("fit/autoencoder", trained)
    trained = results.get("fit/autoencoder")
    if results.get("score/autoencoder") is None:
        from lightning_gen.checkpoints.loading import load_model

        model = load_model(trained["checkpoint"]).eval()
        results.put("score/autoencoder", reconstruction_scores(scorer, model))
    return trained


@torch.no_grad()
def reconstruction_scores(scorer: Scorer, model: Any) -> dict[str, float]:
    """PSNR/SSIM of the test images' reconstructions (torchmetrics, data range 1) and their FID."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    images = scorer.test
    reconstructions = torch.cat([model.reconstruct(images[start : start + BATCH]).cpu() for start in range(0, len(images), BATCH)])
    reconstructions = reconstructions.float().clamp(0, 1)
    return {
        "psnr": float(peak_signal_noise_ratio(reconstructions, images, data_range=1.0)),
        "ssim": float(structural_similarity_index_measure(reconstructions, images, data_range=1.0)),
        "reconstruction_fid": scorer.fid_kid(reconstructions)["fid"],
    }


def vae_rows(args: argparse.Namespace, results: Results, scorer: Scorer) -> None:
    from lightning_gen.checkpoints.loading import load_model

    for row, config_path in VAE_ROWS.items():
        name = "vae_" + Path(config_path).stem
        if results.get(f"fit/{row}") is None:
            print(f"# fitting {row} for {args.vae_budget:.2f} min", flush=True)
            config = fit_config(config_path, args.root, args.runs, name, args.vae_budget, {"prior": "standard"}, {})
            config["data"] = {
                "class_path": "lightning_gen.data.ImageFolderDataModule",
                "init_args": {"root": str(args.root), "image_size": 64, "batch_size": 64, "val_fraction": 0.1, "hflip": True},
            }
            results.put(f"fit/{row}", timed_fit(config, name, args.runs))
        if results.get(f"score/{row}") is None:
            print(f"# scoring {row}", flush=True)
            model = load_model(Path(results.get(f"fit/{row}")["run"]) / "checkpoints" / "last.ckpt").eval()
            scores = reconstruction_scores(scorer, model)
            scores["standard"] = scorer.unconditional(model, "standard")
            codes = train_codes(model, args.root)
            for prior in args.priors:
                if prior == "standard":
                    continue
                began = time.perf_counter()
                fitted = fit_prior(model, prior, codes)
                scores[prior] = {**scorer.unconditional(fitted, "fitted"), "fit_seconds": time.perf_counter() - began}
            results.put(f"score/{row}", scores)


@torch.no_grad()
def train_codes(model: Any, root: Path) -> torch.Tensor:
    images, _ = read_split(root, "train")
    return torch.cat([model.encode(images[start : start + BATCH]) for start in range(0, len(images), BATCH)]).float()


def fit_prior(model: Any, prior: str, codes: torch.Tensor) -> Any:
    """The VAE with its latent prior replaced by one of ``prior``'s kind (as ``prior: gmm`` / ``prior: diffusion``
    build it: 20 full-covariance components, or the denoiser with 2,000 fit steps) fitted on ``codes``, seed 0."""
    from lightning_gen.models.denoising_prior import DenoisingDensity
    from lightning_gen.models.latent_prior import LatentPrior, MixtureDensity

    density = MixtureDensity(20, "full") if prior == "gmm" else DenoisingDensity(model.latent_dim, 2000, 4 * model.latent_dim)
    fitted = LatentPrior(model.latent_dim, density=density)
    fitted.fit(codes, seed=0)
    model.latent_prior = fitted
    return model


# -- the table ----------------------------------------------------------------------------------------------
def table(results: Results) -> str:
    floor = results.get("floor")
    lines = [
        f"real test images vs training images (the floor at N = {floor['n']}): FID {floor['fid']:.1f}, KID {floor['kid']:.4f}; "
        f"judges on the real test images: CNN {floor['judge_cnn']:.1%}, SVC {floor['judge_svc']:.1%} (balanced: mean of the "
        f"per-class accuracies, chance 25 %: {floor['judge_cnn_balanced']:.1%} / {floor['judge_svc_balanced']:.1%})",
        "",
        "| model | steps trained in the budget | s/step | training s | FID @ N | KID | judged class accuracy (CNN / SVC) "
        "| sampling s / 64 images |",
        "|---|---|---|---|---|---|---|---|",
    ]
    autoencoder = results.get("fit/autoencoder")
    for row, (_, _, kind) in DIFFUSION_ROWS.items():
        trained, score = results.get(f"fit/{row}"), results.get(f"score/{row}")
        if trained is None or score is None:
            continue
        seconds = f"{trained['train_seconds']:.0f}"
        if kind == "latent":
            seconds += f" + {autoencoder['train_seconds']:.0f} autoencoder"
        lines.append(
            f"| {row} | {trained['steps']} | {trained['s_per_step']:.2f} | {seconds} | {score['fid']:.1f} | {score['kid']:.4f} | "
            f"{score['judge_cnn']:.1%} / {score['judge_svc']:.1%} (balanced {score['judge_cnn_balanced']:.1%} / "
            f"{score['judge_svc_balanced']:.1%}) | {score['seconds_per_64']:.1f} |"
        )
    for row in DIFFUSION_ROWS:
        curve = results.get(f"curve/{row}")
        if curve:
            points = ", ".join(f"{(p['train_seconds'] + autoencoder['train_seconds']) / 60:.1f} min: {p['fid']:.1f}" for p in curve)
            lines.append(f"\n{row}, FID against training time (autoencoder included): {points}")
        posthoc = results.get(f"posthoc/{row}")
        if posthoc:
            fixed = results.get(f"score/{row}")["fid"]
            points = ", ".join(f"σ_rel {p['sigma_rel']}: {p['fid']:.1f}" for p in posthoc)
            lines.append(f"\n{row}, post-hoc EMA FID: {points}; the configured fixed EMA (decay 0.999): {fixed:.1f}")
    if autoencoder and results.get("score/autoencoder"):
        score = results.get("score/autoencoder")
        lines.append(
            f"\nautoencoder (folder_autoencoder, {autoencoder['steps']} steps, {autoencoder['train_seconds']:.0f} s): "
            f"test PSNR {score['psnr']:.2f} dB, SSIM {score['ssim']:.3f}, reconstruction FID {score['reconstruction_fid']:.1f}"
        )
    vae_lines = []
    for row in VAE_ROWS:
        trained, score = results.get(f"fit/{row}"), results.get(f"score/{row}")
        if trained is None or score is None:
            continue
        priors = " | ".join(f"{score[p]['fid']:.1f}" if p in score else "-" for p in ("standard", "gmm", "diffusion"))
        vae_lines.append(
            f"| {row} | {trained['steps']} | {trained['train_seconds']:.0f} | {score['psnr']:.2f} | {score['ssim']:.3f} | {priors} |"
        )
    if vae_lines:
        lines += [
            "",
            "| β-VAE baseline | steps | training s | test PSNR dB | SSIM | sample FID, N(0, I) | GMM prior | diffusion prior |",
            "|---|---|---|---|---|---|---|---|",
            *vae_lines,
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("data/colour64"), help="an official-split image folder (train/val/test)")
    parser.add_argument("--inception", required=True, help="a --feature_extractor file: the fid-helper adapter (docs/evaluation.md)")
    parser.add_argument("--runs", type=Path, default=Path("runs/latent_vs_pixel"))
    parser.add_argument(
        "--budget", type=float, default=12.0, help="training minutes per diffusion/flow model (latent: autoencoder included)"
    )
    parser.add_argument("--autoencoder_budget", type=float, default=4.0, help="of the latent models' budget, the autoencoder's minutes")
    parser.add_argument("--vae_budget", type=float, default=4.0, help="training minutes per β-VAE baseline")
    parser.add_argument("--checkpoint_minutes", type=float, default=2.0, help="latent runs: a scored checkpoint every N minutes")
    parser.add_argument("--snapshot_every", type=int, default=50, help="post-hoc EMA snapshots every N steps (latent DDPM)")
    parser.add_argument("--sigma_rels", type=float, nargs="+", default=[0.05, 0.10, 0.15, 0.20])
    parser.add_argument("--num", type=int, default=127, help="samples scored per model (at most the test split's size)")
    parser.add_argument("--priors", nargs="+", default=["standard", "gmm", "diffusion"])
    parser.add_argument("--parts", nargs="+", default=["diffusion", "vae"], choices=["diffusion", "vae"])
    parser.add_argument("--features_cache", type=Path, default=None, help="the training images' features (default: RUNS/train_features.pt)")
    parser.add_argument("--fresh", action="store_true", help="refit and rescore everything")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    args.runs.mkdir(parents=True, exist_ok=True)
    results = Results(args.runs / "results.json", args.fresh)
    torch.manual_seed(0)
    if results.get("judge") is None:
        judge = train_judge(args.root, args.runs)
        results.put("judge", str(judge))
    judge_path = Path(results.get("judge"))
    from lightning_gen.checkpoints.loading import load_model

    class_names = list(load_model(judge_path).data_facts.class_names)
    svc, _ = train_svc(args.root)
    features_cache = args.features_cache or args.runs / "train_features.pt"
    scorer = Scorer(args.root, args.inception, judge_path, NameSVC(svc, class_names), args.num, features_cache)
    if results.get("floor") is None:
        results.put("floor", scorer.floor())
    if "diffusion" in args.parts:
        autoencoder = autoencoder_row(args, results, scorer)
        diffusion_rows(args, results, scorer, autoencoder)
    if "vae" in args.parts:
        vae_rows(args, results, scorer)
    print(table(results))


if __name__ == "__main__":
    main()
