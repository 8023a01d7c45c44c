"""One downstream table and plot from several `downstream` runs.csv files (e.g. fractions run in parallel).

python benchmarks/downstream_merge.py runs/downstream/a/runs.csv runs/downstream/b/runs.csv --out runs/downstream/merged
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from lightning_gen.synthetic.downstream_runs import SYNTHETIC  # noqa: E402
from lightning_gen.synthetic.report import markdown_table, plot, summarise, write_csv  # noqa: E402


def read_runs(path: Path) -> list[dict]:
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["real_fraction"] = float(row["real_fraction"]) if row["real_fraction"] else None
        for key in ("seed", "real_images", "synthetic_images", "test_images"):
            row[key] = int(row[key])
        row["accuracy"] = float(row["accuracy"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="runs.csv files written by downstream")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default="downstream")
    args = parser.parse_args()
    rows, seen_synthetic = [], set()
    for path in args.runs:
        for row in read_runs(path):
            if row["training_data"] == SYNTHETIC:  # the same classifier in every file: keep one per seed
                if row["seed"] in seen_synthetic:
                    continue
                seen_synthetic.add(row["seed"])
            rows.append(row)
    fractions = sorted({row["real_fraction"] for row in rows if row["real_fraction"] is not None})
    summary = summarise(rows, fractions)
    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(summary, fractions, args.title)
    write_csv(args.out / "runs.csv", rows)
    write_csv(args.out / "summary.csv", summary)
    (args.out / "summary.md").write_text(table)
    plot(args.out / "downstream.png", summary, fractions, args.title)
    print(table)


if __name__ == "__main__":
    main()
