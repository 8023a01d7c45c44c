"""``python -m lightning_gen stats --config X.yaml [--data.init_args.root PATH]``: how many images each class and attribute has.

The config's ``data`` section (with fit's dotted overrides) is built exactly as ``fit`` builds it, so
the counts describe exactly the subset a run would train on.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from jsonargparse import ArgumentParser, Namespace

from lightning_gen.errors import UserError
from lightning_gen.inference.datamodules import instantiate_datamodule

DESCRIPTION = "per-class and per-attribute image counts of a config's dataset"


def add_arguments(parser: ArgumentParser) -> None:
    """stats reads only the config's data section (with --data.* overrides, e.g. --data.init_args.root)."""


SPLITS = ("train", "val", "test")


def split_label_counts(datamodule: Any) -> dict[str, tuple[Counter, Counter, int]]:
    """Per split that exists (train, val, test): images per class name, per attribute name, and the image count."""
    facts = datamodule.facts
    counts: dict[str, tuple[Counter, Counter, int]] = {}
    for split in SPLITS:
        dataset = getattr(datamodule, f"{split}_set", None)
        if dataset is None:
            continue
        classes: Counter = Counter({name: 0 for name in facts.class_names})
        attributes: Counter = Counter({name: 0 for name in facts.attribute_names})
        if dataset.labels is not None and facts.class_names:
            for index, count in zip(*np.unique(np.asarray(dataset.labels)[dataset.rows], return_counts=True)):
                classes[facts.class_names[int(index)]] += int(count)
        if dataset.attributes is not None and facts.attribute_names:
            sums = (np.asarray(dataset.attributes)[dataset.rows] > 0.5).sum(0)
            for name, count in zip(facts.attribute_names, sums.tolist()):
                attributes[name] += int(count)
        counts[split] = (classes, attributes, len(dataset.rows))
    return counts


def label_counts(datamodule: Any) -> tuple[Counter, Counter, int]:
    """Images per class name and per attribute name over all splits (train, val and test), and the image total."""
    classes: Counter = Counter({name: 0 for name in datamodule.facts.class_names})
    attributes: Counter = Counter({name: 0 for name in datamodule.facts.attribute_names})
    total = 0
    for split_classes, split_attributes, count in split_label_counts(datamodule).values():
        classes.update(split_classes)
        attributes.update(split_attributes)
        total += count
    return classes, attributes, total


def format_counts(title: str, counts: Counter, total: int, per_split: dict[str, Counter] | None = None) -> list[str]:
    """One line per name: the count over all splits, its share, then the count of each split (when several)."""
    if not counts:
        return []
    width = max(len(name) for name in counts)
    splits = per_split if per_split and len(per_split) > 1 else {}

    def by_split(name: str) -> str:
        return (
            "  " + "  ".join(f"{split} {counter[name]:>{len(str(max(counter.values(), default=0)))}}" for split, counter in splits.items())
            if splits
            else ""
        )

    lines = [f"{title} ({len(counts)}):"]
    lines += [f"  {name:<{width}}  {count:7d}  {100 * count / max(total, 1):5.1f} %{by_split(name)}" for name, count in counts.items()]
    ranked = counts.most_common()
    lines.append(f"  least common: {ranked[-1][0]} ({ranked[-1][1]}); most common: {ranked[0][0]} ({ranked[0][1]})")
    return lines


def run(args: Namespace) -> None:
    datamodule = instantiate_datamodule(args, "stats")
    datamodule.prepare_data()
    datamodule.setup("fit")
    per_split = split_label_counts(datamodule)
    classes, attributes, total = label_counts(datamodule)
    if not classes and not attributes:
        raise UserError(f"the dataset {type(datamodule).__name__} has no class labels or attributes; stats needs a labelled dataset.")
    splits = ", ".join(f"{split} {count}" for split, (_, _, count) in per_split.items())
    if len(per_split) > 1:
        print(
            f"{type(datamodule).__name__}: {total} images in {len(per_split)} splits: {splits} (counts below: "
            f"all splits together, then each split)"
        )
    else:
        print(f"{type(datamodule).__name__}: {total} images ({splits})")
    class_splits = {split: counters[0] for split, counters in per_split.items()}
    attribute_splits = {split: counters[1] for split, counters in per_split.items()}
    print(
        "\n".join(format_counts("classes", classes, total, class_splits) + format_counts("attributes", attributes, total, attribute_splits))
    )
