"""One conditioner object per kind of condition (none / class / attributes / text); see ``base``."""

from __future__ import annotations

from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts
from lightning_gen.models.conditioning.base import Conditioner, UNetInputs, broadcast
from lightning_gen.models.conditioning.labels import AttributeConditioner, ClassConditioner
from lightning_gen.models.conditioning.text import TextConditioner
from lightning_gen.text import CaptionEmbeddingCache

__all__ = ["Conditioner", "ClassConditioner", "AttributeConditioner", "TextConditioner", "UNetInputs", "broadcast", "conditioner_for"]


def conditioner_for(kind: str, facts: DataFacts, owner: str, text_cache: CaptionEmbeddingCache | None = None) -> Conditioner:
    """The conditioner of ``kind``; a text one needs the caption cache. The model checks that it supports ``kind``."""
    if kind == "class":
        return ClassConditioner(facts, owner)
    if kind == "attributes":
        return AttributeConditioner(facts, owner)
    if kind == "text":
        return TextConditioner(facts, owner, text_cache)
    return Conditioner(facts, owner)


def check_vocabulary(kind: str, facts: DataFacts, instead: str) -> None:
    """One sentence when the data lacks the names ``kind`` conditions on, or has a single class (the condition says nothing).

    ``instead``: how to train without the condition (ends the sentence), e.g. "set model.conditioning to none".
    """
    if kind not in ("class", "attributes"):
        return
    names = facts.class_names if kind == "class" else facts.attribute_names
    if not names:
        what = "class names" if kind == "class" else "attributes"
        raise UserError(
            f"model.conditioning is '{kind}' but the data (data facts: {facts.image_size}px, {facts.num_classes} classes, "
            f"{facts.num_attributes} attributes) has no {what}; use a dataset with {what}, or {instead}."
        )
    if kind == "class" and len(names) == 1:
        raise UserError(
            f"model.conditioning is 'class' but the data has one class ('{names[0]}'), so the condition tells the model nothing; "
            f"give the data a second class (a second class folder, or another name in data.classes), or {instead}."
        )
