"""Prior samples judged as the requested class on real labelled image sets, against training wall time.

For each set (an ImageFolder of class folders, e.g. written by scripts/write_real_sets.py) this trains a
judge on the set's real images (configs/folder_judge.yaml) unless one is given, then fits each recipe
through the CLI with the JudgeScore callback every ``--every`` epochs, and prints one table row per
(set, recipe, scored epoch): epochs, optimizer steps, training seconds (validation and judging excluded)
and the share of prior samples the judge classifies as the requested class.

    python scripts/write_real_sets.py --out data/real
    python benchmarks/real_data_quality.py --root data/real --sets digits mnist5k --recipes cvae_baseline cvae
    python benchmarks/real_data_quality.py --root data/real --sets digits --recipes cvae --second_judge svc

``--second_judge svc`` adds a judge of a different kind: scikit-learn's ``SVC`` (RBF kernel) on the flattened
pixels of the set's real training images at the model's resolution (the run's own datamodule). After each fit
the final model's prior samples (``--samples``, seed 0: the callback's last samples) are scored by both judges,
and a second table shows them side by side with each judge's accuracy on the real validation images.

Recipes are a config plus overrides (RECIPES below); the CPU time is shared with whatever else runs. Each fit
uses torch's default threads (one per core) unless OMP_NUM_THREADS is set; the table's seconds depend on it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]

ADAMW_1E3 = {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.001, "weight_decay": 0.01}}

# name → (config, overrides of model.init_args, overrides of trainer)
RECIPES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    # shapes_cvae.yaml's settings: v2, concat, MSE, latent 8, β 1 with warm-up
    "cvae_baseline": ("configs/folder_cvae.yaml", {"injection": "concat", "class_loss_weight": 0.0, "reconstruction": "mse"}, {}),
    "cvae_v1_baseline": (
        "configs/folder_cvae.yaml",
        {"variant": "v1", "injection": "concat", "class_loss_weight": 0.0, "reconstruction": "mse"},
        {},
    ),
    "cvae_film": ("configs/folder_cvae.yaml", {"class_loss_weight": 0.0}, {}),
    "cvae_aux": ("configs/folder_cvae.yaml", {"injection": "concat"}, {}),
    "cvae_mse": ("configs/folder_cvae.yaml", {"reconstruction": "mse"}, {}),  # collapsed on mnist5k
    "cvae": ("configs/folder_cvae.yaml", {}, {}),  # the config as shipped (FiLM, class loss 20, BCE): the default recipe
    "cvae_bce": ("configs/folder_cvae.yaml", {"reconstruction": "bce"}, {}),  # = cvae; the name of the first BCE runs
    "cvae_v1": ("configs/folder_cvae.yaml", {"variant": "v1"}, {}),
    "ddpm": ("configs/folder_ddpm.yaml", {}, {}),  # the config as shipped: AdamW 2e-3, guidance 5
    # the first shipped recipe (AdamW 1e-3, guidance 3), and the same training sampled and judged at guidance 5
    "ddpm_lr1e3_g3": ("configs/folder_ddpm.yaml", {"guidance_scale": 3.0, "optimizer": ADAMW_1E3}, {}),
    "ddpm_lr1e3_g5": ("configs/folder_ddpm.yaml", {"guidance_scale": 5.0, "optimizer": ADAMW_1E3}, {}),
}


class TrainingTime(pl.Callback):
    """Logs ``time/train_seconds``: wall time spent in training epochs so far (validation and judging excluded)."""

    def __init__(self) -> None:
        self.total = 0.0
        self._start: float | None = None

    def _stop(self) -> None:
        if self._start is not None:
            self.total += time.perf_counter() - self._start
            self._start = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop()

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Validation runs inside the training epoch, before on_train_epoch_end: the epoch's time is counted here.
        self._stop()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            pl_module.log("time/train_seconds", self.total, batch_size=1)


def environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "WANDB_SERVICE"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("WANDB_MODE", "offline")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env  # torch's threads: OMP_NUM_THREADS when set (e.g. 1 on shared cores), else one per core


def fit(config: dict[str, Any], name: str, runs: Path, log: Path) -> Path:
    """Runs ``fit`` on a written config; returns the run folder."""
    path = runs / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "lightning_gen", "fit", "--config", str(path)]
    with log.open("w") as out:
        subprocess.run(command, cwd=REPO, env=environment(), stdout=out, stderr=subprocess.STDOUT, check=True)
    versions = sorted((runs / name).glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    return versions[-1]


def base_config(path: str, root: Path, runs: Path, name: str) -> dict[str, Any]:
    config = yaml.safe_load((REPO / path).read_text())
    config["data"]["init_args"]["root"] = str(root)
    config["trainer"].update({"default_root_dir": str(runs), "enable_progress_bar": False})
    config["tracking"] = {**config.get("tracking", {}), "name": name, "logger": "csv"}
    return config


def train_judge(root: Path, runs: Path, name: str) -> Path:
    run = fit(base_config("configs/folder_judge.yaml", root, runs, name), name, runs, runs / f"{name}.log")
    return run / "checkpoints" / "last.ckpt"


def read_curve(run: Path) -> list[dict[str, float]]:
    rows = []
    with (run / "metrics.csv").open() as handle:
        for row in csv.DictReader(handle):
            if row.get("val/judge_overall"):
                rows.append(
                    {
                        "epoch": int(row["epoch"]) + 1,
                        "step": int(row["step"]) + 1,
                        "seconds": float(row["time/train_seconds"]),
                        "accuracy": float(row["val/judge_overall"]),
                    }
                )
    return rows


def run_recipe(recipe: str, root: Path, judge: Path, runs: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    config_path, model_overrides, trainer_overrides = RECIPES[recipe]
    name = f"{root.name}_{recipe}"
    config = base_config(config_path, root, runs, name)
    config["model"]["init_args"].update(model_overrides)
    config["trainer"].update(trainer_overrides)
    if args.epochs:
        config["trainer"]["max_epochs"] = args.epochs
    config["trainer"]["check_val_every_n_epoch"] = args.every
    config["trainer"]["callbacks"] = [
        {"class_path": "benchmarks.real_data_quality.TrainingTime"},
        {
            "class_path": "lightning_gen.callbacks.judge_score.JudgeScore",
            "init_args": {"judge_ckpt": str(judge), "num_samples": args.samples},
        },
    ]
    started = time.perf_counter()
    run = fit(config, name, runs, runs / f"{name}.log")
    print(f"# {name}: {time.perf_counter() - started:.0f} s in all (with validation and judging), run {run}", flush=True)
    return [{"set": root.name, "recipe": recipe, **row} for row in read_curve(run)]


def real_pixels(config: dict[str, Any], split: str) -> tuple[Any, Any]:
    """(N × pixels in [0, 1], labels) of a split as the run's datamodule serves it (its resolution; these configs do not augment)."""
    from lightning_gen.inference.datamodules import datamodule_from_config

    datamodule = datamodule_from_config(config["data"], "the benchmark's config")
    datamodule.setup("fit")
    loader = datamodule.train_dataloader() if split == "train" else datamodule.val_dataloader()
    images, labels = [], []
    for batch in loader:
        images.append(batch["image"].float().flatten(1))
        labels.append(batch["label"])
    return torch.cat(images).numpy(), torch.cat(labels).numpy()


def fit_svc(config: dict[str, Any], probability: bool = False) -> Any:
    """The second judge: an RBF SVC on the real training pixels (``probability``: with Platt-calibrated
    ``predict_proba``, fit on 5 folds and one final SVC, about 2× the time)."""
    from sklearn.svm import SVC

    train_x, train_y = real_pixels(config, "train")
    svc = SVC(kernel="rbf", gamma="scale", C=10.0)
    if probability:
        from sklearn.calibration import CalibratedClassifierCV

        svc = CalibratedClassifierCV(svc, method="sigmoid", cv=5, ensemble=False)
    return svc.fit(train_x, train_y)


def train_svc(config: dict[str, Any]) -> tuple[Any, float]:
    """The second judge (``fit_svc``) and its accuracy on the real validation images."""
    svc = fit_svc(config)
    val_x, val_y = real_pixels(config, "val")
    return svc, float((svc.predict(val_x) == val_y).mean())


@torch.no_grad()
def judge_both(run: Path, judge: Path, svc: Any, samples: int) -> dict[str, float]:
    """The final model's ``samples`` prior samples (seed 0, conditions spread over the classes), judged by the CNN and the SVC."""
    from lightning_gen.inference.loading import load_model
    from lightning_gen.metrics.judged import judged_kind, sample_spread
    from lightning_gen.models.judge import judge_accuracy

    model = load_model(run / "checkpoints" / "last.ckpt").eval()
    images, expected = sample_spread(model, samples, 0, samples)
    facts = model.data_facts
    cnn = judge_accuracy(load_model(judge).eval(), images, expected, judged_kind(model), facts.class_names, facts.attribute_names)
    predicted = svc.predict(images.float().flatten(1).cpu().numpy())
    return {"cnn": float(cnn["overall"]), "svc": float((predicted == expected.cpu().numpy()).mean())}


def second_opinion(recipe: str, root: Path, judge: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Both judges on the recipe's final model (the run ``run_recipe`` just made) and on the real validation images."""
    name = f"{root.name}_{recipe}"
    config = yaml.safe_load((args.runs / f"{name}.yaml").read_text())
    run = sorted((args.runs / name).glob("version_*"), key=lambda p: int(p.name.split("_")[1]))[-1]
    svc, svc_real = train_svc(config)
    cnn_real = judge_real(judge, config)
    scores = judge_both(run, judge, svc, args.samples)
    return {
        "set": root.name,
        "recipe": recipe,
        "epochs": config["trainer"]["max_epochs"],
        "cnn_real": cnn_real,
        "svc_real": svc_real,
        **scores,
    }


@torch.no_grad()
def judge_real(judge: Path, config: dict[str, Any]) -> float:
    """The CNN judge's accuracy on the real validation images (the same split the SVC is checked on)."""
    from lightning_gen.inference.loading import load_model
    from lightning_gen.models.judge import judge_accuracy

    model = load_model(judge).eval()
    images, labels = real_pixels(config, "val")
    size = model.data_facts.image_size
    pixels = torch.from_numpy(images).view(len(images), -1, size, size)
    return float(judge_accuracy(model, pixels, torch.from_numpy(labels), "class", model.data_facts.class_names)["overall"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("data/real"), help="folder holding one ImageFolder per set")
    parser.add_argument("--sets", nargs="+", default=["digits", "mnist5k"])
    parser.add_argument("--recipes", nargs="+", default=["cvae_baseline", "cvae"], choices=sorted(RECIPES))
    parser.add_argument("--runs", type=Path, default=Path("runs/real_data_quality"))
    parser.add_argument("--judges", nargs="*", default=[], help="set=judge.ckpt pairs to reuse instead of training judges")
    parser.add_argument("--epochs", type=int, default=0, help="override max_epochs (0 = the config's)")
    parser.add_argument("--every", type=int, default=10, help="score prior samples every this many epochs")
    parser.add_argument("--samples", type=int, default=500, help="prior samples judged per scoring")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    parser.add_argument(
        "--second_judge", choices=["svc"], default=None, help="also judge each final model's samples with an SVC on real pixels"
    )
    args = parser.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    judges = dict(pair.split("=", 1) for pair in args.judges)
    rows, both = [], []
    for name in args.sets:
        root = args.root / name
        judge = Path(judges[name]) if name in judges else train_judge(root, args.runs, f"{name}_judge")
        for recipe in args.recipes:
            rows += run_recipe(recipe, root, judge, args.runs, args)
            if args.second_judge:
                both.append(second_opinion(recipe, root, judge, args))
                print(f"# {both[-1]}", flush=True)
            if args.out:
                args.out.write_text(json.dumps({"curve": rows, "both_judges": both} if both else rows, indent=1))
    print("| set | recipe | epochs | steps | training s | judged as requested |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['set']} | {row['recipe']} | {row['epoch']} | {row['step']} | {row['seconds']:.0f} | {100 * row['accuracy']:.1f} % |")
    if both:
        print(f"\nThe final models' {args.samples} prior samples (seed 0), two judges of different kinds:")
        print("| set | recipe | epochs | CNN judge (real val) | SVC on pixels (real val) | CNN judge: samples | SVC: samples |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for row in both:
            print(
                f"| {row['set']} | {row['recipe']} | {row['epochs']} | {100 * row['cnn_real']:.1f} % | {100 * row['svc_real']:.1f} % "
                f"| {100 * row['cnn']:.1f} % | {100 * row['svc']:.1f} % |"
            )


if __name__ == "__main__":
    main()
