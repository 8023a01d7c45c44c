"""Does latent editing work? On the built-in shapes, recolour validation images and let the judge say
whether they now show the target colour and still the same shape.

    python benchmarks/edit_success.py --vae runs/quickstart/version_0/checkpoints/last.ckpt \
        --judge runs/shapes_judge/version_0/checkpoints/last.ckpt \
        [--cvae runs/shapes_cvae/version_0/checkpoints/last.ckpt] [--images 600] [--references 2000]

Edits, all through the functions the ``edit`` command uses, each with global directions
(``--neighbours 0``: d = mean z with − mean z without, seed 001) and with local ones (``--neighbours k``:
each image's k nearest references with minus its k nearest without):
- ``--from C --to T`` (β-VAE): z + s·(d_T − d_C), locally: nearest T references minus nearest C references;
- ``--attribute T`` (β-VAE): z + s·d_T;
- CVAE condition swap: encode with the image's class (C, shape), decode with class (T, shape).
Baseline, measured in the same run: the unedited reconstructions (strength 0): how often the judge
keeps colour and shape of a reconstruction is the ceiling of "shape kept".
Success = the judge's class (colour × shape) has the target colour / the image's shape.
``--svc_config configs/quickstart.yaml`` adds a second judge of another kind (two_judges.py's RBF SVC on the
real training pixels of that config's data): every edit is then scored by both, side by side.
"""

from __future__ import annotations

import argparse
import time

import torch

from lightning_gen.checkpoints.loading import load_model
from lightning_gen.data.shapes_render import COLOURS, SHAPES
from lightning_gen.inference.directions import load_directions
from lightning_gen.latent.codec import Codec
from lightning_gen.latent.editing import edit_images, edit_offset
from lightning_gen.latent.reference_data import data_section_of_run, instantiate_data
from lightning_gen.models.judge import judge_logits

COLOUR_NAMES, SHAPE_NAMES = list(COLOURS), list(SHAPES)


def validation_images(ckpt: str, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    datamodule = instantiate_data(data_section_of_run(ckpt))
    datamodule.setup("fit")
    images, labels = [], []
    for batch in datamodule.val_dataloader():
        images.append(batch["image"])
        labels.append(batch["label"])
    return torch.cat(images)[:count], torch.cat(labels)[:count]


def judged(judge, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    predicted = judge_logits(judge, images)["class"].argmax(1)
    return predicted // len(SHAPE_NAMES), predicted % len(SHAPE_NAMES)


Scores = dict[str, tuple[float, float, float]]  # judge name -> (target colour, shape kept, both)


def score(judges: dict, edited: torch.Tensor, target_colour: torch.Tensor, shape: torch.Tensor) -> Scores:
    out = {}
    for name, judge in judges.items():
        colour_seen, shape_seen = judged(judge, edited)
        hit, kept = colour_seen == target_colour, shape_seen == shape
        out[name] = (hit.float().mean().item(), kept.float().mean().item(), (hit & kept).float().mean().item())
    return out


def recoloured(
    kind: str, model, images, labels, target: int, strength: float, directions=None, neighbours: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Edited images of every validation image whose colour is not ``target``, and their shapes."""
    colour, shape = labels // len(SHAPE_NAMES), labels % len(SHAPE_NAMES)
    rows = colour != target
    outputs = []
    for source in range(len(COLOUR_NAMES)):
        chosen = rows & (colour == source)
        if not chosen.any():
            continue
        batch = images[chosen]
        if kind == "cvae":
            own = labels[chosen]
            swapped = target * len(SHAPE_NAMES) + shape[chosen]
            with torch.no_grad():
                outputs.append((model.decode(model.encode(batch, own), swapped).float(), shape[chosen]))
            continue
        edit = (
            edit_offset(directions, attribute=COLOUR_NAMES[target], neighbours=neighbours)
            if kind == "attribute"
            else edit_offset(directions, source=COLOUR_NAMES[source], target=COLOUR_NAMES[target], neighbours=neighbours)
        )
        outputs.append((edit_images(Codec(model), batch, edit, [strength])[:, 0], shape[chosen]))
    return torch.cat([o[0] for o in outputs]), torch.cat([o[1] for o in outputs])


def cells(scores: Scores) -> str:
    return " | ".join(f"{hit:6.1%} | {kept:6.1%} | {both:6.1%}" for hit, kept, both in scores.values())


def header(first: str, judges: dict) -> str:
    columns = " | ".join(f"{name}: target colour | shape kept | both" for name in judges)
    return f"| {first} | {columns} |\n" + "|---" * (1 + first.count("|") + 3 * len(judges)) + "|"


def table(title: str, rows: list[tuple[str, Scores, int]], judges: dict) -> None:
    print(f"\n{title}")
    print(header("target | images", judges))
    for name, scores, count in rows:
        print(f"| {name:<10} | {count:6d} | {cells(scores)} |")


def evaluate(
    kind: str, model, judges: dict, images, labels, strength: float, directions=None, neighbours: int = 0
) -> list[tuple[str, Scores, int]]:
    rows = []
    for target, name in enumerate(COLOUR_NAMES):
        edited, shape = recoloured(kind, model, images, labels, target, strength, directions, neighbours)
        rows.append((name, score(judges, edited, torch.full_like(shape, target), shape), len(edited)))
    count = sum(row[2] for row in rows)
    overall = {judge: tuple(sum(row[1][judge][i] * row[2] for row in rows) / count for i in range(3)) for judge in judges}
    return [*rows, ("all", overall, count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", required=True, help="the quickstart β-VAE checkpoint (configs/quickstart.yaml)")
    parser.add_argument("--judge", required=True, help="the shapes judge checkpoint (configs/shapes_judge.yaml)")
    parser.add_argument("--cvae", default=None, help="a class-conditional CVAE checkpoint (configs/shapes_cvae.yaml)")
    parser.add_argument("--images", type=int, default=600, help="validation images edited per target colour (at most)")
    parser.add_argument("--references", type=int, default=8000, help="training images (at most) the directions come from")
    parser.add_argument("--neighbours", default="0,16", help="k values compared (0 = global directions); the per-colour tables use each")
    parser.add_argument("--strengths", default="1,2", help="edit strengths swept; the per-colour tables use --strength")
    parser.add_argument("--strength", type=float, default=1.0)
    parser.add_argument("--svc_config", help="a config whose data: serves the real shapes (configs/quickstart.yaml): adds the SVC judge")
    args = parser.parse_args()
    torch.manual_seed(0)
    started = time.perf_counter()
    judges = {"CNN judge": load_model(args.judge).eval()}
    if args.svc_config:
        from two_judges import svc_judge  # scikit-learn only when asked for

        judges["SVC on pixels"] = svc_judge(args.svc_config, len(COLOUR_NAMES) * len(SHAPE_NAMES))
    vae = load_model(args.vae).eval()
    images, labels = validation_images(args.vae, args.images)
    directions, hit = load_directions(vae, args.vae, args.references, data_section_of_run(args.vae))
    print(
        f"Built-in shapes, {len(images)} validation images; directions from {args.references} training images "
        f"({'cache' if hit else 'computed'}); judge: {args.judge}"
    )

    # Baseline: reconstructions, unedited. Is the judge right about colour and shape before any edit?
    with torch.no_grad():
        reconstructions = vae.reconstruct(images)
    colour, shape = labels // len(SHAPE_NAMES), labels % len(SHAPE_NAMES)
    real, reconstructed = score(judges, images, colour, shape), score(judges, reconstructions, colour, shape)
    for name in judges:
        (real_hit, real_kept, _), (recon_hit, recon_kept, _) = real[name], reconstructed[name]
        print(
            f"\nBaseline (same run), {name}: on the real images: colour {real_hit:.1%}, shape {real_kept:.1%}; "
            f"on the β-VAE's unedited reconstructions: colour {recon_hit:.1%}, shape {recon_kept:.1%}"
        )

    ks = [int(k) for k in args.neighbours.split(",")]
    strengths = sorted({float(x) for x in args.strengths.split(",")} | {args.strength})
    labels_of = {"from_to": "β-VAE --from C --to T", "attribute": "β-VAE --attribute T"}
    results = {
        (kind, k, strength): evaluate(kind, vae, judges, images, labels, strength, directions, k)
        for kind in labels_of
        for k in ks
        for strength in strengths
    }
    print("\nSweep (all target colours):")
    print(header("edit | neighbours | strength", judges))
    for (kind, k, strength), rows in results.items():
        print(f"| {labels_of[kind]:<21} | {k if k else 'global':>10} | {strength:8.2f} | {cells(rows[-1][1])} |")
    for k in ks:
        where = f"{k} nearest references" if k else "global directions"
        title = f"β-VAE, --from <colour> --to <target>, {where}, strength {args.strength} ({args.vae})"
        table(title, results[("from_to", k, args.strength)], judges)
        table(f"β-VAE, --attribute <target>, {where}, strength {args.strength}", results[("attribute", k, args.strength)], judges)
    if args.cvae:
        cvae = load_model(args.cvae).eval()
        table(
            f"CVAE condition swap (encode with the image's class, decode with the target colour and the same shape) ({args.cvae})",
            evaluate("cvae", cvae, judges, images, labels, args.strength),
            judges,
        )
    print(f"\n{time.perf_counter() - started:.0f} s on {torch.get_num_threads()} CPU threads (cores shared with other jobs)")


if __name__ == "__main__":
    main()
