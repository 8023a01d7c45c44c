"""``python -m lightning_gen stats --config X.yaml [--data.init_args.root PATH]``: how many images each class and attribute has.

The config's ``data`` section (with fit's dotted overrides) is built exactly as ``fit`` builds it, so
the counts describe exactly the subset a run would train on.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from jsonargparse import ArgumentParser, Namespace

from lightning_gen.commands.common import instantiate_datamodule
from lightning_gen.errors import UserError


DESCRIPTION = "per-class and per-attribute image counts of a config's dataset"


def add_arguments(parser: ArgumentParser) -> None:
    """stats reads only the config's data section (with --data.* overrides, e.g. --data.init_args.root)."""


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


def run(args: Namespace) -> None:
    datamodule = instantiate_datamodule(args, "stats")
    datamodule.prepare_data()
    datamodule.setup("fit")
    classes, attributes, total = label_counts(datamodule)
    if not classes and not attributes:
        raise UserError(f"the dataset {type(datamodule).__name__} has no class labels or attributes; stats needs a labelled dataset.")
    print(f"{type(datamodule).__name__}: {total} images")
    print("\n".join(format_counts("classes", classes, total) + format_counts("attributes", attributes, total)))
