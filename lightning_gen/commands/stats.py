"""``python -m lightning_gen stats --config X.yaml [--root PATH]``: how many images each class and attribute has.

Only the config's ``data`` section is read (built with jsonargparse, like LightningCLI does), so the
counts describe exactly the subset a run would train on.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
import numpy as np
import yaml
from jsonargparse import ArgumentParser

from lightning_gen.errors import UserError


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="lightning_gen stats", description="Per-class and per-attribute image counts of a config's dataset.")
    parser.add_argument("--config", type=str, required=True, help="a run config with a data section")
    parser.add_argument("--root", type=Optional[str], default=None, help="overrides data.init_args.root")
    return parser


def datamodule_from_config(path: str, root: str | None = None) -> pl.LightningDataModule:
    config_path = Path(path)
    if not config_path.is_file():
        raise UserError(f"config {config_path} does not exist; pass --config with a YAML file from configs/.")
    data = (yaml.safe_load(config_path.read_text()) or {}).get("data")
    if not data:
        raise UserError(f"{config_path} has no data section; pass a run config such as configs/shapes_cvae.yaml.")
    if root is not None:
        data.setdefault("init_args", {})["root"] = root
    parser = ArgumentParser()
    parser.add_subclass_arguments(pl.LightningDataModule, "data")
    return parser.instantiate_classes(parser.parse_object({"data": data})).data


def label_counts(datamodule: Any) -> tuple[Counter, Counter, int]:
    """Images per class name and per attribute name over the train and validation splits, and the image total."""
    facts = datamodule.facts
    classes: Counter = Counter({name: 0 for name in facts.class_names})
    attributes: Counter = Counter({name: 0 for name in facts.attribute_names})
    total = 0
    for dataset in (datamodule.train_set, datamodule.val_set, datamodule.test_set):
        if dataset is None:
            continue
        total += len(dataset.rows)
        if dataset.labels is not None and facts.class_names:
            for index, count in zip(*np.unique(np.asarray(dataset.labels)[dataset.rows], return_counts=True)):
                classes[facts.class_names[int(index)]] += int(count)
        if dataset.attributes is not None and facts.attribute_names:
            sums = (np.asarray(dataset.attributes)[dataset.rows] > 0.5).sum(0)
            for name, count in zip(facts.attribute_names, sums.tolist()):
                attributes[name] += int(count)
    return classes, attributes, total


def format_counts(title: str, counts: Counter, total: int) -> list[str]:
    if not counts:
        return []
    width = max(len(name) for name in counts)
    lines = [f"{title} ({len(counts)}):"]
    lines += [f"  {name:<{width}}  {count:7d}  {100 * count / max(total, 1):5.1f} %" for name, count in counts.items()]
    ranked = counts.most_common()
    lines.append(f"  least common: {ranked[-1][0]} ({ranked[-1][1]}); most common: {ranked[0][0]} ({ranked[0][1]})")
    return lines


def main(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    datamodule = datamodule_from_config(args.config, args.root)
    datamodule.prepare_data()
    datamodule.setup("fit")
    classes, attributes, total = label_counts(datamodule)
    if not classes and not attributes:
        raise UserError(f"the dataset of {args.config} has no class labels or attributes; stats needs a labelled dataset.")
    print(f"{type(datamodule).__name__}: {total} images")
    print("\n".join(format_counts("classes", classes, total) + format_counts("attributes", attributes, total)))
