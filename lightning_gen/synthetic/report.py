"""The downstream result as a table (markdown, CSV) and a plot of accuracy against the real fraction.

Cells are mean ± sample standard deviation over seeds. The gain row is paired: for each seed,
real + synthetic minus real (same real subset, same initial weights). Synthetic data "helps" at a
fraction only when the mean gain exceeds the seed-to-seed spread of both rows it compares.
"""

from __future__ import annotations

import csv
import statistics
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning_gen.synthetic.downstream_runs import MIXED, REAL, SYNTHETIC


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(rows: Sequence[dict[str, Any]], fractions: Sequence[float]) -> list[dict[str, Any]]:
    """One summary row per (training data, fraction) plus the paired gain and a verdict per fraction."""
    summary = []
    synthetic = [row["accuracy"] for row in rows if row["training_data"] == SYNTHETIC]
    for fraction in fractions:
        by_data = {
            data: {row["seed"]: row for row in rows if row["training_data"] == data and row["real_fraction"] == fraction}
            for data in (REAL, MIXED)
        }
        for data, seeded in by_data.items():
            accuracies = [row["accuracy"] for row in seeded.values()]
            if accuracies:
                mean, std = mean_std(accuracies)
                first = next(iter(seeded.values()))
                summary.append(
                    {
                        "training_data": data,
                        "real_fraction": fraction,
                        "real_images": first["real_images"],
                        "synthetic_images": first["synthetic_images"],
                        "seeds": len(accuracies),
                        "mean": mean,
                        "std": std,
                    }
                )
        if synthetic:
            mean, std = mean_std(synthetic)
            synthetic_images = next(row["synthetic_images"] for row in rows if row["training_data"] == SYNTHETIC)
            summary.append(
                {
                    "training_data": SYNTHETIC,
                    "real_fraction": fraction,
                    "real_images": 0,
                    "synthetic_images": synthetic_images,
                    "seeds": len(synthetic),
                    "mean": mean,
                    "std": std,
                }
            )
        paired = [by_data[MIXED][seed]["accuracy"] - by_data[REAL][seed]["accuracy"] for seed in by_data[REAL] if seed in by_data[MIXED]]
        if paired:
            gain, gain_std = mean_std(paired)
            spread = max(
                (row["std"] for row in summary if row["real_fraction"] == fraction and row["training_data"] in (REAL, MIXED)), default=0.0
            )
            summary.append(
                {
                    "training_data": "gain (paired)",
                    "real_fraction": fraction,
                    "seeds": len(paired),
                    "mean": gain,
                    "std": gain_std,
                    "verdict": verdict(gain, spread, len(paired)),
                }
            )
    return summary


def verdict(gain: float, spread: float, seeds: int) -> str:
    if seeds < 2:
        return "one seed: no spread to compare against"
    if gain > spread:
        return "synthetic helps (gain > spread)"
    if gain < -spread:
        return "synthetic hurts (loss > spread)"
    return "no clear effect (gain within spread)"


def percent(mean: float, std: float, seeds: int, signed: bool = False) -> str:
    value = f"{100 * mean:+.1f}" if signed else f"{100 * mean:.1f}"
    return f"{value} ± {100 * std:.1f}" if seeds > 1 else value


def markdown_table(summary: Sequence[dict[str, Any]], fractions: Sequence[float], title: str) -> str:
    cell = {(row["training_data"], row["real_fraction"]): row for row in summary}
    header = (
        "| training data | "
        + " | ".join(
            f"{100 * fraction:g} % real ({cell[(REAL, fraction)]['real_images']:,} images)"
            if (REAL, fraction) in cell
            else f"{100 * fraction:g} % real"
            for fraction in fractions
        )
        + " |"
    )
    lines = [title, "", header, "|---|" + "---|" * len(fractions)]
    for data in (REAL, MIXED, SYNTHETIC):
        if not any((data, fraction) in cell for fraction in fractions):
            continue
        cells = [
            percent(cell[(data, f)]["mean"], cell[(data, f)]["std"], cell[(data, f)]["seeds"]) + " %" if (data, f) in cell else "—"
            for f in fractions
        ]
        synthetic_images = next((cell[(data, f)]["synthetic_images"] for f in fractions if (data, f) in cell), 0)
        label = f"{data} ({synthetic_images:,} synthetic)" if data != REAL else data
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    gains = [cell.get(("gain (paired)", f)) for f in fractions]
    if any(gains):
        lines.append(
            "| gain: real + synthetic − real, paired by seed (points) | "
            + " | ".join(percent(g["mean"], g["std"], g["seeds"], signed=True) if g else "—" for g in gains)
            + " |"
        )
        lines.append("| verdict | " + " | ".join(g["verdict"] if g else "—" for g in gains) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    keys = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def plot(path: Path, summary: Sequence[dict[str, Any]], fractions: Sequence[float], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6, 4))
    for data, style in ((REAL, "o-"), (MIXED, "s-")):
        points = [row for row in summary if row["training_data"] == data]
        if points:
            axes.errorbar(
                [row["real_fraction"] for row in points],
                [100 * row["mean"] for row in points],
                yerr=[100 * row["std"] for row in points],
                fmt=style,
                capsize=3,
                label=data,
            )
    synthetic = [row for row in summary if row["training_data"] == SYNTHETIC]
    if synthetic:
        mean, std = 100 * synthetic[0]["mean"], 100 * synthetic[0]["std"]
        axes.axhline(mean, color="grey", linestyle="--", label=f"{SYNTHETIC}")
        axes.axhspan(mean - std, mean + std, color="grey", alpha=0.15)
    if len(fractions) > 1:
        axes.set_xscale("log")
        axes.minorticks_off()
    axes.set_xticks(list(fractions), [f"{100 * f:g} %" for f in fractions])
    axes.set_xlabel("fraction of the real training split")
    axes.set_ylabel("accuracy on the real held-out split (%)")
    axes.set_title(textwrap.fill(title, 80), fontsize=8)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
