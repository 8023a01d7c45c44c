"""Judge: heads from the data facts, and judge_accuracy on hand-made cases with a fake judge of known outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_gen.data import ShapesDataModule
from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts
from lightning_gen.models import Judge
from lightning_gen.models.judge import class_word_groups, judge_accuracy

CLASSES = ("red circle", "red square", "blue circle", "blue square")
ATTRIBUTES = ("red", "blue", "circle", "square")


class FakeJudge(nn.Module):
    """Returns fixed logits whatever the images: row i of the outputs for image i."""

    def __init__(self, class_logits: torch.Tensor | None = None, attribute_logits: torch.Tensor | None = None):
        super().__init__()
        self.outputs = {"class": class_logits, "attributes": attribute_logits}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {key: value for key, value in self.outputs.items() if value is not None}


def test_heads_follow_the_data_facts():
    judge = Judge(ShapesDataModule(image_size=16).facts, channels=(8, 16), hidden=8).eval()
    batch = {"image": torch.rand(2, 3, 16, 16), "label": torch.tensor([0, 1]), "attributes": torch.zeros(2, 12)}
    out = judge(batch["image"])
    assert out["class"].shape == (2, 24) and out["attributes"].shape == (2, 12)
    expected = nn.functional.cross_entropy(out["class"], batch["label"]) + nn.functional.binary_cross_entropy_with_logits(
        out["attributes"], batch["attributes"]
    )
    with pytest.warns(UserWarning, match="self.log"):  # no trainer attached
        assert torch.allclose(judge._step(batch, "test"), expected, atol=1e-5)


def test_a_judge_needs_labels():
    with pytest.raises(UserError, match="model.targets"):
        Judge(DataFacts(image_size=16), channels=(8, 16))


def test_class_accuracy_overall_per_class_and_per_word_group():
    requested = torch.tensor([0, 0, 1, 3])  # red circle ×2, red square, blue square
    judged = torch.tensor([0, 2, 1, 1])  # right, colour wrong, right, colour wrong
    judge = FakeJudge(class_logits=nn.functional.one_hot(judged, 4).float())
    scores = judge_accuracy(judge, torch.zeros(4, 3, 8, 8), requested, "class", CLASSES, group_names=["colour", "shape"])
    assert scores == {
        "overall": 0.5,
        "class/red circle": 0.5,
        "class/red square": 1.0,
        "class/blue square": 0.0,
        "group/colour": 0.5,
        "group/shape": 1.0,
    }


def test_word_groups_need_equal_word_counts():
    assert class_word_groups(["horse", "killer+whale"]) == {}
    assert class_word_groups(["killer+whale", "blue+whale"]) == {"word1": 0, "word2": 1}


def test_attribute_accuracy_counts_requested_attributes_and_groups():
    requested = torch.tensor([[1, 0, 1, 0], [1, 0, 0, 1], [0, 1, 0, 0]], dtype=torch.float)
    logits = torch.tensor([[3.0, -1, 2, -2], [2, -1, 1, -1], [-1, -2, 1, -1]])  # right; square missed; blue missed
    scores = judge_accuracy(
        FakeJudge(attribute_logits=logits), torch.zeros(3, 3, 8, 8), requested, "attributes",
        attribute_names=ATTRIBUTES, attribute_groups={"colour": ["red", "blue"], "shape": ["circle", "square"]},
    )  # fmt: skip
    assert scores["overall"] == pytest.approx(1 / 3)
    assert scores["attribute/red"] == 1.0 and scores["attribute/blue"] == 0.0
    assert scores["attribute/circle"] == 1.0 and scores["attribute/square"] == 0.0
    assert scores["group/colour"] == pytest.approx(2 / 3)  # sample 3: argmax over (red, blue) is red
    assert scores["group/shape"] == 0.5  # sample 2: circle judged over square
