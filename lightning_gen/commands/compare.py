"""``python -m lightning_gen compare --group G [--root runs] | RUN_DIR_OR_CKPT ... --out DIR``: a sweep's runs side by side.

Writes (seed 003's figures) ``reconstructions.png`` (rows = the same validation images, column 0 the
originals, then one column per run), ``interpolations.png`` (one row per run, the same image pair, real
images at both ends), ``samples.png`` (one row per run, the same noise), each labelled on its margin
(every run's name and varying key values, the real columns "real"), ``runs.md``/``runs.csv`` (one
row per run: the config keys that differ, parameters, steps, time, validation scores, FID/KID with
``--metrics``) and ``metrics_vs_<key>.png``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
import torch
from jsonargparse import ArgumentParser, Namespace
from torchvision.utils import save_image

from lightning_gen.callbacks.progress import progress_callbacks
from lightning_gen.console.progress import track
from lightning_gen.errors import UserError
from lightning_gen.inference.datamodules import datamodule_from_config
from lightning_gen.inference.devices import resolve_device
from lightning_gen.inference.loading import load_model
from lightning_gen.metrics import comparison
from lightning_gen.metrics.runs import RunRecord, check_comparable, find_group, record_of, short_key, varying_keys

DESCRIPTION = "a sweep's runs side by side: reconstruction/interpolation/sample grids, a metric table and plots"
VALIDATION_COLUMNS = ("val/loss", "val/recon", "val/kl", "val/psnr", "val/ssim")


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("runs", nargs="*", type=str, default=[], help="run directories or checkpoints inside them")
    parser.add_argument("--group", type=Optional[str], default=None, help="compare every run whose config.yaml has this tracking.group")
    parser.add_argument("--root", type=str, default="runs", help="where to look for --group's runs")
    parser.add_argument("--out", type=str, default="compare", help="folder for the grids, table and plots")
    parser.add_argument("--metrics", type=Optional[str], default=None, help="also score fid,kid (and pr) of each run's samples")
    parser.add_argument("--num", type=int, default=2048, help="samples per run for --metrics")
    parser.add_argument("--num_images", type=int, default=8, help="validation images in the reconstruction grid and samples per row")
    parser.add_argument("--interpolation_steps", type=int, default=8, help="decoded steps between the two real images")
    parser.add_argument("--seed", type=int, default=0, help="noise seed, the same for every run")
    parser.add_argument("--split", type=str, default="val", help="real split for the grids and --metrics: val or test")
    parser.add_argument("--batch_size", type=int, default=256, help="samples generated at once for --metrics")
    parser.add_argument("--feature_extractor", type=str, default="inception", help="see evaluate --help")
    parser.add_argument("--inception_weights", type=Optional[str], default=None, help="path of the FID Inception weights file")
    parser.add_argument("--cache_dir", type=Optional[str], default=None, help="real-feature cache folder")
    parser.add_argument("--log_wandb", type=bool, default=False, help="also log the table and grids to a W&B run 'compare' in the group")
    parser.add_argument("--device", type=str, default="auto", help="auto, cpu or cuda")


def validation_scores(model: Any, datamodule: Any) -> dict[str, float]:
    """The model's own validation step over the whole split, the same data for every run."""
    lines = progress_callbacks(None, [])  # batch lines in a pipe, no bar in a terminal
    trainer = pl.Trainer(
        accelerator="auto" if model.device.type != "cpu" else "cpu",
        devices=1,
        logger=False,
        callbacks=lines,
        enable_checkpointing=False,
        enable_progress_bar=bool(lines),
        enable_model_summary=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = trainer.validate(model, datamodule=datamodule, verbose=False)
    return {key: float(value) for key, value in (results[0] if results else {}).items()}


def training_facts(record: RunRecord, model: Any) -> dict[str, Any]:
    checkpoint = torch.load(record.checkpoint, map_location="cpu", weights_only=True, mmap=True)  # data only, never code
    started = (record.directory / "config.yaml").stat().st_mtime
    return {
        "params": sum(parameter.numel() for parameter in model.parameters()),
        "steps": int(checkpoint.get("global_step", 0)),
        "minutes": round(max(0.0, record.checkpoint.stat().st_mtime - started) / 60, 2),
    }


def first_images(datamodule: Any, split: str, count: int) -> dict[str, Any]:
    datamodule.setup("test" if split == "test" else "validate")
    loader = datamodule.test_dataloader() if split == "test" else datamodule.val_dataloader()
    taken: dict[str, list] = {}
    total = 0
    for batch in loader:
        for key, value in batch.items():
            taken.setdefault(key, []).append(value)
        total += len(batch["image"])
        if total >= count:
            break
    return {
        key: torch.cat(values)[:count] if isinstance(values[0], torch.Tensor) else sum(map(list, values), [])[:count]
        for key, values in taken.items()
    }


def quality_scores(models: list[Any], datamodule: Any, args: Namespace, device: str) -> list[dict[str, float]]:
    from lightning_gen.commands.evaluate import parse_metrics
    from lightning_gen.metrics.evaluation import distribution_scores, real_features, split_name
    from lightning_gen.metrics.quality import QualityRequest, announce, sample_features

    metrics = [name for name in parse_metrics(args.metrics, None, False) if name in ("fid", "kid", "pr")]
    sampling_args = Namespace(
        num=args.num,
        seed=args.seed,
        batch_size=args.batch_size,
        split=args.split,
        feature_extractor=args.feature_extractor,
        inception_weights=args.inception_weights,
        cache_dir=args.cache_dir,
        save_images=None,
    )
    request = QualityRequest.from_args(sampling_args, metrics, device, None)
    extractor = request.extractor()
    real, cached = real_features(datamodule, args.split, extractor, request.cache, args.batch_size)
    data = split_name(datamodule, args.split)
    announce(data, len(real), cached)
    rows = []
    for model in models:
        fake = sample_features(model, request, extractor, Namespace())
        scores = distribution_scores(real, fake, set(metrics), "samples", data, args.seed, extractor.name)
        rows.append({score.metric: score.value for score in scores})
    print(f"FID/KID: {args.num} samples per run (seed {args.seed}) against {len(real)} images of {data}, extractor {extractor.name}")
    return rows


def run(args: Namespace) -> None:
    if args.group is None and not args.runs:
        raise UserError("name the runs to compare: --group G (with --root) or run directories / checkpoints.")
    records = find_group(args.group, args.root) if args.group else [record_of(path) for path in args.runs]
    if len(records) < 2:
        raise UserError(f"compare needs at least two runs, found {len(records)} ({', '.join(record.name for record in records)}).")
    device = resolve_device(args.device)
    models = [load_model(record.checkpoint, device) for record in track(records, "compare: loading checkpoints", unit="runs")]
    check_comparable(records, [model.data_facts.image_size for model in models])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    datamodule = datamodule_from_config(records[0].config.get("data"), str(records[0].directory / "config.yaml"))

    keys = varying_keys(records)
    rows: list[dict[str, Any]] = []
    for record, model in track(list(zip(records, models)), "compare: validating the runs", unit="runs"):
        row: dict[str, Any] = {"run": record.name}
        row.update({short_key(key): record.settings.get(key) for key in keys})
        row.update(training_facts(record, model))
        scores = validation_scores(model, datamodule)
        row.update({column: scores.get(column) for column in VALIDATION_COLUMNS if column in scores})
        rows.append(row)
    if args.metrics:
        for row, scores in zip(rows, quality_scores(models, datamodule, args, device)):
            row.update(scores)

    images = first_images(datamodule, args.split, max(args.num_images, 2))
    pair = [{key: value[index : index + 1] for key, value in images.items()} for index in (0, 1)]
    labels = comparison.run_labels(records, keys)
    cell = models[0].data_facts.image_size
    ends = [comparison.REAL, *[""] * args.interpolation_steps, comparison.REAL]
    grids = {
        "reconstructions": comparison.labeled_grid(
            comparison.reconstruction_grid(models, {key: value[: args.num_images] for key, value in images.items()}),
            cell,
            column_labels=[comparison.REAL, *labels],
        ),
        "interpolations": comparison.labeled_grid(
            comparison.interpolation_grid(models, pair[0], pair[1], args.interpolation_steps), cell, labels, ends
        ),
        "samples": comparison.labeled_grid(comparison.sample_grid(models, args.num_images, args.seed), cell, labels),
    }
    for name, grid in grids.items():
        save_image(grid, out / f"{name}.png")
    table = comparison.write_markdown(rows, out / "runs.md")
    comparison.write_csv(rows, out / "runs.csv")
    group = records[0].group if args.group is None else args.group
    metric_columns = [column for column in rows[0] if column not in ("run", "params", "steps", "minutes", *map(short_key, keys))]
    plots = [
        plot
        for key in map(short_key, keys)
        if (plot := comparison.plot_metrics(rows, key, metric_columns, out / f"metrics_vs_{key}.png", group))
    ]
    print("Columns of reconstructions.png (labelled on the figure): real, " + ", ".join(labels))
    print("Rows of interpolations.png and samples.png (labelled): " + ", ".join(labels))
    print(table)
    print(f"Wrote {', '.join(f'{name}.png' for name in grids)}, runs.md, runs.csv{''.join(', ' + plot.name for plot in plots)} to {out}")
    if args.log_wandb:
        log_comparison(records, rows, out, [*(out / f"{name}.png" for name in grids), *plots])


def log_comparison(records: list[RunRecord], rows: list[dict[str, Any]], out: Path, pngs: list[Path]) -> None:
    import wandb

    from lightning_gen.config.settings import TrackingSettings
    from lightning_gen.tracking.loggers import wandb_offline

    tracking = records[0].config.get("tracking") or {}
    settings = TrackingSettings(**{key: value for key, value in tracking.items() if key in TrackingSettings.__dataclass_fields__})
    run = wandb.init(
        project=settings.project,
        group=records[0].group,
        name=f"compare/{records[0].group}",
        dir=str(out),
        mode="offline" if wandb_offline(settings) else "online",
        job_type="compare",
    )
    columns = list(rows[0])
    run.log(
        {
            "compare/runs": wandb.Table(
                columns=columns,
                data=[
                    [comparison.format_value(row.get(c)) if isinstance(row.get(c), tuple) else row.get(c) for c in columns] for row in rows
                ],
            ),
            **{f"compare/{png.stem}": wandb.Image(str(png)) for png in pngs},
        }
    )
    run.finish()
