"""``python -m lightning_gen evaluate``: sample quality of a checkpoint or a folder, in numbers that name their data.

- ``--ckpt_path CKPT [--metrics fid,kid,pr,psnr,ssim] [--num N] [--seed S] [--split val|test]``: FID, KID and
  precision/recall of prior samples (and, for VAEs, of reconstructions) against the real split; per-image
  PSNR/SSIM of reconstructions over the whole split with histograms. Real features are cached on disk.
- ``--images DIR --reference DIR|--config X.yaml``: folder mode, like pytorch-fid's and clean-fid's CLIs.
- ``--judge JUDGE_CKPT`` (metric ``judge``): samples conditions spread evenly over a conditional generator's
  vocabulary and reports how often a judge checkpoint agrees with the request, overall, per class /
  attribute and per word group of multi-word class names (shapes: ``red circle`` → colour, shape).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Optional

from jsonargparse import ArgumentParser, Namespace

from lightning_gen.commands.sample import add_sampling_arguments
from lightning_gen.errors import UserError
from lightning_gen.inference.devices import resolve_device
from lightning_gen.inference.loading import load_model
from lightning_gen.inference.sampling import options_of, sampling_kwargs

DESCRIPTION = "FID/KID/precision-recall, PSNR/SSIM distributions and judge accuracy of a checkpoint or an image folder"
KNOWN_METRICS = ("fid", "kid", "pr", "psnr", "ssim", "judge")


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--ckpt_path", type=Optional[str], default=None, help="a lightning_gen .ckpt file")
    parser.add_argument(
        "--metrics",
        type=Optional[str],
        default=None,
        help=f"comma-separated, of {','.join(KNOWN_METRICS)}; default: judge with --judge, else fid,kid,pr (+psnr,ssim for VAEs)",
    )
    parser.add_argument("--judge", type=Optional[str], default=None, help="a Judge .ckpt trained on the same dataset (metric judge)")
    parser.add_argument("--num", type=Optional[int], default=None, help="number of generated samples (default 2048; 512 for judge)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (and KID subset seed)")
    parser.add_argument("--split", type=str, default="val", help="real split to compare against: val or test")
    parser.add_argument("--batch_size", type=int, default=256, help="samples generated and featurised at once")
    parser.add_argument("--out", type=Optional[str], default=None, help="JSON file to write the scores to (PNGs go beside it)")
    parser.add_argument("--save_images", type=Optional[str], default=None, help="folder to keep the generated images in (PNG)")
    parser.add_argument(
        "--feature_extractor", type=str, default="inception", help="inception, a TorchScript/.pt2 file, a Judge .ckpt or a class path"
    )
    parser.add_argument("--inception_weights", type=Optional[str], default=None, help="path of the FID Inception weights file")
    parser.add_argument("--images", type=Optional[str], default=None, help="folder mode: a folder of generated images")
    parser.add_argument(
        "--reference", type=Optional[str], default=None, help="folder mode: a folder of real images (default: the config's dataset split)"
    )
    parser.add_argument(
        "--image_size", type=Optional[int], default=None, help="folder mode: side images are resized to (default: the reference's)"
    )
    parser.add_argument("--cache_dir", type=Optional[str], default=None, help="real-feature cache folder (default: beside the image cache)")
    parser.add_argument("--log_to_run", type=bool, default=True, help="add the scores to the checkpoint's run directory and W&B run")
    parser.add_argument(
        "--group_names", type=Optional[str], default=None, help="judge: comma-separated names of class-name word groups, e.g. colour,shape"
    )
    parser.add_argument("--device", type=str, default="auto", help="auto, cpu or cuda")
    add_sampling_arguments(parser)
    parser.add_argument(
        "--ema_sigma_rel", type=Optional[str], default=None, help="post-hoc EMA lengths to score, one row each, e.g. 0.05,0.1,0.15,0.2"
    )
    parser.add_argument("--prompt_template", type=Optional[str], default=None, help="text models: prompt per class, e.g. 'a large {name}'")


def parse_metrics(text: str | None, judge: str | None, has_latents: bool) -> list[str]:
    if text is None:
        if judge:
            return ["judge"]
        return ["fid", "kid", "pr", *(["psnr", "ssim"] if has_latents else [])]
    metrics = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in metrics if name not in KNOWN_METRICS]
    if unknown:
        raise UserError(f"--metrics has unknown {', '.join(unknown)}; choose from {','.join(KNOWN_METRICS)}.")
    return metrics


def run_judge(args: Namespace, model: Any, device: str) -> dict[str, float]:
    from lightning_gen.metrics.judged import check_conditional, format_table, judge_scores

    if not args.judge:
        raise UserError("--metrics judge needs --judge JUDGE_CKPT, a Judge trained on the same dataset.")
    judge = load_model(args.judge, device)
    group_names = [name.strip() for name in args.group_names.split(",")] if args.group_names else None
    check_conditional(model)
    sampling = sampling_kwargs(model, options_of(args))
    num = args.num or 512
    scores = judge_scores(model, judge, num, args.seed, args.batch_size, group_names, args.prompt_template, **sampling)
    options = "".join(f", {key} {value}" for key, value in sampling.items())
    print(f"Judged {num} samples of {args.ckpt_path} (condition: {model.conditioning}{options}, seed {args.seed})")
    print(format_table(scores))
    return scores


def run(args: Namespace) -> None:
    from lightning_gen.metrics.quality import QualityRequest, evaluate_checkpoint, evaluate_folder
    from lightning_gen.metrics.report import format_scores, write_json
    from lightning_gen.runs.lookup import trusted_run_directory

    if (args.ckpt_path is None) == (args.images is None):
        raise UserError("pass either --ckpt_path CKPT (a model to sample) or --images DIR (folder mode), not both or neither.")
    if args.num is not None and args.num < 1:
        raise UserError(f"--num must be at least 1, got {args.num}.")
    if args.split not in ("val", "test"):
        raise UserError(f"--split must be val or test, got {args.split}.")
    device = resolve_device(args.device)
    if args.ema_sigma_rel is not None:
        return run_sigma_rels(args, device)
    payload: dict[str, Any] = {"seed": args.seed, "split": args.split}
    out_dir = Path(args.out).parent if args.out else None
    if args.images is not None:
        metrics = parse_metrics(args.metrics, None, False)
        request = QualityRequest.from_args(args, metrics, device, out_dir)
        scores = evaluate_folder(request, args)
        payload["images"] = args.images
    else:
        model = load_model(args.ckpt_path, device)
        from lightning_gen.protocol import has_latents

        metrics = parse_metrics(args.metrics, args.judge, has_latents(model))
        payload["checkpoint"] = str(args.ckpt_path)
        if "judge" in metrics:
            payload["judge"] = run_judge(args, model, device)
        scores, pngs = [], []
        run_directory = trusted_run_directory(args.ckpt_path) if args.log_to_run else None
        if set(metrics) - {"judge"}:
            # Histograms go to the run directory when there is one (and are copied beside --out).
            request = QualityRequest.from_args(args, metrics, device, run_directory / "evaluation" if run_directory else out_dir)
            scores, pngs = evaluate_checkpoint(model, request, args, trusted_run_directory(args.ckpt_path))
            if run_directory is not None and out_dir is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                for png in pngs:
                    shutil.copy(png, out_dir / png.name)
        if run_directory is not None and scores:
            from lightning_gen.metrics.report import log_to_wandb_run
            from lightning_gen.runs.directory import read_run_info

            write_json(
                run_directory / "evaluation" / f"scores-seed{args.seed}-{args.split}.json",
                {**payload, "scores": [s.to_dict() for s in scores]},
            )
            run_id = read_run_info(args.ckpt_path).get("run_id")
            if run_id and log_to_wandb_run(run_directory, run_id, scores, pngs):
                print(f"Added the scores to W&B run {run_id} in {run_directory}")
        payload["pngs"] = [str(path) for path in pngs]
    if scores:
        print(format_scores(scores))
    payload["scores"] = [s.to_dict() for s in scores]
    if args.out:
        if args.images is None and metrics == ["judge"]:
            write_json(args.out, payload["judge"])  # the judge-only file keeps its flat {name: accuracy} form
        else:
            write_json(args.out, payload)
        print(f"Wrote {args.out}")


def run_sigma_rels(args: Namespace, device: str) -> None:
    """One row of scores per post-hoc EMA length (``--ema_sigma_rel``), so the best EMA of a run can be picked."""
    from lightning_gen.checkpoints.posthoc_ema import format_sigma_rel_table, parse_sigma_rels, score_sigma_rels
    from lightning_gen.metrics.quality import QualityRequest, evaluate_checkpoint
    from lightning_gen.metrics.report import write_json
    from lightning_gen.protocol import has_latents
    from lightning_gen.runs.lookup import trusted_run_directory

    if args.ckpt_path is None:
        raise UserError(
            "--ema_sigma_rel rebuilds the EMAs of a run; pass --ckpt_path with a checkpoint of a run fitted with --ema.post_hoc true."
        )

    def score(model: Any) -> dict[str, float]:
        metrics = parse_metrics(args.metrics, args.judge, has_latents(model))
        row = {"judge accuracy": run_judge(args, model, device)["overall"]} if "judge" in metrics else {}
        if set(metrics) - {"judge"}:
            scores, _ = evaluate_checkpoint(
                model, QualityRequest.from_args(args, metrics, device, None), args, trusted_run_directory(args.ckpt_path)
            )
            row.update({s.key: s.value for s in scores})
        return row

    rows = score_sigma_rels(args.ckpt_path, parse_sigma_rels(args.ema_sigma_rel), device, score)
    print(f"Post-hoc EMA of {args.ckpt_path} (seed {args.seed}, split {args.split}, {args.num or 'default'} samples):")
    print(format_sigma_rel_table(rows))
    if args.out:
        payload = {"checkpoint": str(args.ckpt_path), "seed": args.seed, "split": args.split}
        write_json(args.out, {**payload, "ema_sigma_rel": [{"sigma_rel": sigma_rel, **row} for sigma_rel, row in rows]})
        print(f"Wrote {args.out}")
