"""``python -m lightning_gen downstream --config REAL_DATA.yaml --synthetic DIR [--classifier judge|resnet18]
[--real_fraction 0.1,0.25,1.0] [--seeds 3]``.

Does a generated dataset help a classifier? Trains a classifier from scratch on (a) a fraction of
the real training split, (b) the same fraction plus the synthetic folder, (c) the synthetic folder
alone — per real fraction and seed — and tests each on the real held-out split (test, else
validation; never synthetic). Writes ``runs.csv`` (one row per classifier), ``summary.csv``,
``summary.md`` (mean ± std over seeds, the paired gain and a verdict) and ``downstream.png`` to
--out, and to W&B when the config's tracking logger is wandb. ``--trainer.*`` set the training
(``--trainer.max_steps N --trainer.max_epochs -1`` gives every classifier the same number of updates).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from jsonargparse import ArgumentParser, Namespace
from lightning.pytorch.utilities import rank_zero_info

from lightning_gen.errors import UserError
from lightning_gen.inference.datamodules import instantiate_datamodule
from lightning_gen.synthetic.downstream_runs import ClassifierSetup, RealImages, TensorImages, run_downstream
from lightning_gen.synthetic.folder import read_image_folder
from lightning_gen.synthetic.report import markdown_table, plot, summarise, write_csv
from lightning_gen.synthetic.trainer_options import trainer_options

DESCRIPTION = "train a classifier on real, real + synthetic and synthetic images; test on real"
JUDGE_DEFAULT_LR = 2e-3  # configs/shapes_judge.yaml's Adam learning rate


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--synthetic", type=str, required=True, help="an export folder (DIR/<class name>/<image>)")
    parser.add_argument(
        "--classifier",
        type=str,
        default="judge",
        choices=["judge", "resnet18"],
        help="judge (the project's CNN) or resnet18 (torchvision, from scratch)",
    )
    parser.add_argument("--real_fraction", type=str, default="0.1,0.25,1.0", help="comma-separated fractions of the real training split")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per setting (real subset, initial weights, batch order)")
    parser.add_argument(
        "--lr", type=Optional[float], default=None, help="AdamW learning rate (default: the config's Judge optimizer lr, else 2e-3)"
    )
    parser.add_argument("--weight_decay", type=float, default=0.0, help="AdamW weight decay")
    parser.add_argument("--batch_size", type=Optional[int], default=None, help="training batch size (default: the datamodule's)")
    parser.add_argument(
        "--out", type=Optional[str], default=None, help="folder for the tables and plot (default runs/downstream/<synthetic folder name>)"
    )


def parse_fractions(text: str) -> list[float]:
    try:
        fractions = [float(part) for part in str(text).split(",") if part.strip()]
    except ValueError as error:
        raise UserError(f"--real_fraction '{text}' is not a comma-separated list of numbers; write e.g. 0.1,0.25,1.0.") from error
    if not fractions or not all(0.0 < fraction <= 1.0 for fraction in fractions):
        raise UserError(f"--real_fraction '{text}' needs fractions in (0, 1], e.g. 0.1,0.25,1.0.")
    return sorted(set(fractions))


def judge_settings(args: Namespace) -> tuple[dict[str, Any], float | None]:
    """(Judge arguments, learning rate) from the config's model section when it configures a Judge."""
    model = args.get("model")
    if model is None or not str(model.get("class_path", "")).endswith("Judge"):
        return {}, None
    init = model.get("init_args")
    init = init.as_dict() if hasattr(init, "as_dict") else dict(init or {})
    optimizer = init.get("optimizer") or {}
    lr = (optimizer.get("init_args") or {}).get("lr") if isinstance(optimizer, dict) else None
    keep = ("channels", "hidden", "dropout")
    return {key: init[key] for key in keep if init.get(key) is not None}, lr


def real_splits(datamodule: Any) -> tuple[Any, Any, str]:
    datamodule.prepare_data()
    datamodule.setup("fit")
    test_set = getattr(datamodule, "test_set", None)
    if test_set is None:
        datamodule.setup("test")
        test_set = getattr(datamodule, "test_set", None)
    split = "test"
    if test_set is None:
        test_set, split = getattr(datamodule, "val_set", None), "validation"
    train_set = getattr(datamodule, "train_set", None)
    if train_set is None or test_set is None or not len(test_set):
        raise UserError(
            f"{type(datamodule).__name__} gives no training split or no held-out split; downstream tests on real held-out images."
        )
    return train_set, test_set, split


def log_to_wandb(args: Namespace, out: Path, runs: list[dict[str, Any]], summary: list[dict[str, Any]], name: str) -> None:
    tracking = args.get("tracking")
    if tracking is None or getattr(tracking, "logger", None) != "wandb":
        return
    import wandb

    from lightning_gen.config.settings import TrackingSettings
    from lightning_gen.tracking.loggers import wandb_offline

    settings = tracking if isinstance(tracking, TrackingSettings) else TrackingSettings(**tracking.as_dict())
    run = wandb.init(
        project=settings.project,
        group=settings.group or "downstream",
        name=f"downstream/{name}",
        dir=str(out),
        mode="offline" if wandb_offline(settings) else "online",
        config={"synthetic": str(args.synthetic)},
    )
    for table_name, rows in (("runs", runs), ("summary", summary)):
        keys = list(dict.fromkeys(key for row in rows for key in row))
        run.log({table_name: wandb.Table(columns=keys, data=[[row.get(key) for key in keys] for row in rows])})
    run.log({"downstream": wandb.Image(str(out / "downstream.png"))})
    run.finish()


def run(args: Namespace) -> None:
    fractions = parse_fractions(args.real_fraction)
    if args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {args.seeds}.")
    datamodule = instantiate_datamodule(args, "downstream (the real data)")
    facts = datamodule.facts
    if not facts.class_names:
        raise UserError(f"{type(datamodule).__name__} of --config has no class names; downstream needs labelled real data.")
    real_train, real_test, split = real_splits(datamodule)
    images, labels = read_image_folder(args.synthetic, facts.class_names, facts.image_size, facts.channels)
    judge_options, config_lr = judge_settings(args)
    setup = ClassifierSetup(
        classifier=args.classifier,
        class_names=facts.class_names,
        image_size=facts.image_size,
        channels=facts.channels,
        lr=args.lr or config_lr or JUDGE_DEFAULT_LR,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size or getattr(datamodule, "batch_size", 64),
        num_workers=getattr(datamodule, "num_workers", 0),
        trainer_options=trainer_options(args),
        judge_options=judge_options if args.classifier == "judge" else {},
    )
    name = Path(args.synthetic).resolve().name
    out = Path(args.out or Path("runs") / "downstream" / name)
    out.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []

    def report(row: dict[str, Any]) -> None:
        runs.append(row)
        write_csv(out / "runs.csv", runs)  # after every classifier, so a stopped run keeps what it measured
        rank_zero_info(f"downstream: {json.dumps(row)}")

    rank_zero_info(
        f"downstream: {len(real_train)} real training images, {len(images)} synthetic, testing on {len(real_test)} real {split} images"
    )
    run_downstream(real_train, RealImages(real_test), TensorImages(images, labels), fractions, args.seeds, setup, report)
    summary = summarise(runs, fractions)
    title = (
        f"{args.classifier} on {type(datamodule).__name__}: accuracy on {len(real_test):,} real {split} images, "
        f"synthetic = {name}, {args.seeds} seed(s)"
    )
    table = markdown_table(summary, fractions, title)
    write_csv(out / "summary.csv", summary)
    (out / "summary.md").write_text(table)
    plot(out / "downstream.png", summary, fractions, title)
    print(table)
    print(f"Wrote runs.csv, summary.csv, summary.md and downstream.png to {out}")
    log_to_wandb(args, out, runs, summary, name)
