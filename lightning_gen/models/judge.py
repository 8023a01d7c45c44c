"""Judge: a small CNN trained on real images to tell class and attributes, used to score conditional samples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torch.nn import functional as F
from torchmetrics.classification import MulticlassAccuracy, MultilabelRecall

from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts
from lightning_gen.models.base import ModelBase
from lightning_gen.models.conv_stacks import ConvEncoder

Targets = Literal["auto", "class", "attributes", "both"]


class Judge(ModelBase):
    """Predicts the class (cross-entropy) and/or the attributes (BCE per attribute) of an image.

    Trained with ``python -m lightning_gen fit`` on a dataset's real images; logs ``val/class_accuracy``
    and ``val/attribute_accuracy``. It generates nothing: it is a ModelBase (data facts, optimiser
    injection, checkpoint loading by ``lightning_gen.checkpoints.load_model``) but not a generator, so the
    commands that sample refuse it in one sentence. ``predict`` gives each image's class / attribute
    probabilities; ``features`` (``protocol.HasFeatures``) its trunk's hidden layer, a feature extractor.

    Args:
        channels: conv widths (stride 2 each) before one hidden dense layer.
        hidden: width of that dense layer.
        dropout: before the heads.
        targets: what to predict; ``auto`` = everything the dataset has.
    """

    def __init__(
        self,
        data_facts: DataFacts | None = None,
        channels: Sequence[int] = (32, 64, 128),
        hidden: int = 128,
        dropout: float = 0.2,
        targets: Targets = "auto",
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["step", "epoch"] = "step",
    ):
        super().__init__(data_facts, optimizer, lr_scheduler, scheduler_interval)
        self.save_model_hyperparameters()
        facts = self.data_facts
        self.predicts_class = facts.num_classes > 0 and targets in ("auto", "class", "both")
        self.predicts_attributes = facts.num_attributes > 0 and targets in ("auto", "attributes", "both")
        if not (self.predicts_class or self.predicts_attributes) or (targets == "both" and not facts.num_classes * facts.num_attributes):
            raise UserError(
                f"model.targets is '{targets}' but the dataset has {facts.num_classes} class names and "
                f"{facts.num_attributes} attribute names; use a labelled dataset or another model.targets."
            )
        encoder = ConvEncoder(facts.channels, channels, facts.image_size, batchnorm=True)
        self.body = nn.Sequential(encoder, nn.Linear(encoder.out_features, hidden), nn.LeakyReLU(0.2), nn.Dropout(dropout))
        self.class_head = nn.Linear(hidden, facts.num_classes) if self.predicts_class else None
        self.attribute_head = nn.Linear(hidden, facts.num_attributes) if self.predicts_attributes else None

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """N×hidden: the trunk's hidden layer (before the heads), for FID-style metrics on data Inception never saw."""
        return self.body(images.float())

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits: ``class`` (N×K) and/or ``attributes`` (N×A)."""
        hidden = self.features(images)
        out = {}
        if self.class_head is not None:
            out["class"] = self.class_head(hidden)
        if self.attribute_head is not None:
            out["attributes"] = self.attribute_head(hidden)
        return out

    def _step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        logits = self(batch["image"])
        size = len(batch["image"])
        synced = stage != "train"  # evaluation means over every rank's shard; no all-reduce per training step
        loss = torch.zeros((), device=self.device)
        if "class" in logits:
            loss = loss + F.cross_entropy(logits["class"], batch["label"])
            accuracy = (logits["class"].argmax(1) == batch["label"]).float().mean()
            self.log(f"{stage}/class_accuracy", accuracy, prog_bar=stage == "val", batch_size=size, sync_dist=synced)
        if "attributes" in logits:
            target = batch["attributes"].float()
            loss = loss + F.binary_cross_entropy_with_logits(logits["attributes"], target)
            accuracy = ((logits["attributes"] > 0).float() == target).float().mean()
            self.log(f"{stage}/attribute_accuracy", accuracy, prog_bar=stage == "val", batch_size=size, sync_dist=synced)
        self.log(f"{stage}/loss", loss, batch_size=size, sync_dist=synced)
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """Per image (with its dataset ``index``): ``class`` (the judged class id) and ``class_probabilities`` (N×K
        softmax), and/or ``attribute_probabilities`` (N×A, each attribute's sigmoid)."""
        logits = self(batch["image"])
        out = {"index": batch["index"]} if "index" in batch else {}
        if "class" in logits:
            out["class_probabilities"] = logits["class"].softmax(1)
            out["class"] = logits["class"].argmax(1)
        if "attributes" in logits:
            out["attribute_probabilities"] = torch.sigmoid(logits["attributes"])
        return out


def class_word_groups(class_names: Sequence[str], group_names: Sequence[str] | None = None) -> dict[str, int]:
    """Group name → word position, when every class name has the same number (≥ 2) of words ("red circle")."""
    counts = {len(name.replace("+", " ").split()) for name in class_names}
    if len(counts) != 1 or (count := counts.pop()) < 2:
        return {}
    names = list(group_names) if group_names else [f"word{position + 1}" for position in range(count)]
    if len(names) != count:
        raise UserError(f"--group_names gives {len(names)} names but class names have {count} words; give {count}.")
    return {name: position for position, name in enumerate(names)}


@torch.no_grad()
def judge_logits(judge: nn.Module, images: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
    parts = [judge(images[start : start + batch_size]) for start in range(0, len(images), batch_size)]
    return {key: torch.cat([part[key] for part in parts]).cpu() for key in parts[0]}


def judge_accuracy(
    judge: nn.Module,
    images: torch.Tensor,
    condition: torch.Tensor,
    kind: Literal["class", "attributes"],
    class_names: Sequence[str] = (),
    attribute_names: Sequence[str] = (),
    group_names: Sequence[str] | None = None,
    attribute_groups: dict[str, Sequence[str]] | None = None,
) -> dict[str, float]:
    """Fraction of ``images`` whose judged class / attributes match the requested ``condition``.

    ``kind="class"``: ``condition`` holds class indices; keys ``overall``, ``class/<name>`` and, when class
    names are multi-word ("red circle"), ``group/<word group>`` (the judged name's word at that position matches).
    ``kind="attributes"``: ``condition`` is multi-hot; a sample counts as correct when every requested
    attribute is judged present (logit > 0); ``attribute/<name>`` over the samples requesting it, and
    ``group/<name>`` for each mutually exclusive ``attribute_groups`` entry (argmax within the group).
    """
    # torchmetrics' accuracies, each called on all the images at once: no DDP sync, because the callers hold
    # every image already (JudgeScore gathers them to every rank, evaluate runs in one process) and a sync
    # would count them once per rank.
    logits = judge_logits(judge, images)
    condition = condition.cpu()
    results: dict[str, float] = {}
    if kind == "class":
        if "class" not in logits:
            raise UserError("the judge checkpoint predicts no classes; train a judge on a dataset with class labels.")
        requested = condition.long().view(-1)
        judged = logits["class"].argmax(1)
        count = logits["class"].shape[1]
        results["overall"] = MulticlassAccuracy(count, average="micro")(judged, requested).item()
        per_class = MulticlassAccuracy(count, average=None)(judged, requested)  # the recall of each requested class
        for index in requested.unique().tolist():
            results[f"class/{class_names[index]}"] = per_class[index].item()
        words = [name.replace("+", " ").split() for name in class_names]
        for group, position in class_word_groups(class_names, group_names).items():
            # Each class is mapped to its word at this position: accuracy over those words.
            vocabulary = sorted({word[position] for word in words})
            word_of = torch.tensor([vocabulary.index(word[position]) for word in words])
            results[f"group/{group}"] = MulticlassAccuracy(len(vocabulary), average="micro")(word_of[judged], word_of[requested]).item()
        return results
    if "attributes" not in logits:
        raise UserError("the judge checkpoint predicts no attributes; train a judge on a dataset with attributes.")
    requested = condition.float() > 0.5
    present = logits["attributes"] > 0
    # "every requested attribute present" (the others may be present too) is no torchmetrics measure: by hand.
    results["overall"] = (present | ~requested).all(1).float().mean().item()
    recall = MultilabelRecall(len(attribute_names), average=None)(present.long(), requested.long())
    for index, name in enumerate(attribute_names):
        if requested[:, index].any():
            results[f"attribute/{name}"] = recall[index].item()  # over the samples requesting it
    for group, members in (attribute_groups or {}).items():
        columns = [list(attribute_names).index(member) for member in members]
        asked = requested[:, columns]
        rows = asked.any(1)
        if rows.any():
            judged_member = logits["attributes"][:, columns].argmax(1)
            accuracy = MulticlassAccuracy(len(columns), average="micro")
            results[f"group/{group}"] = accuracy(judged_member[rows], asked[rows].float().argmax(1)).item()
    return results
