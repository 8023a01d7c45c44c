"""A model condition from what a user types: ``--condition`` class or attribute names, or a ``--prompt``."""

from __future__ import annotations

from typing import Any

from lightning_gen.errors import UserError
from lightning_gen.protocol import Generator, is_conditional


def split_names(text: str) -> list[str]:
    """``"black, tail"`` → ``["black", "tail"]``."""
    return [name.strip() for name in text.split(",") if name.strip()]


def refuse_unconditional(model: Generator, flag: str) -> None:
    if not is_conditional(model):
        raise UserError(f"{type(model).__name__} in this checkpoint is unconditional and does not take {flag}; drop it.")


def condition_by_names(model: Generator, names: str | None, flag: str = "--condition", n: int = 1) -> Any:
    """The model's condition for ``n`` samples of comma-separated class or attribute names; None when no names are given."""
    if names is None or not names.strip():
        return None
    refuse_unconditional(model, flag)
    return model.condition_from_names(split_names(names), n)


def resolve_condition(model: Generator, num: int, condition: str | None, prompt: str | None) -> Any:
    """The condition of ``--condition`` names or a ``--prompt`` for ``num`` samples (None for neither)."""
    if condition is not None and prompt is not None:
        raise UserError("pass either --condition or --prompt, not both.")
    if condition is not None:
        refuse_unconditional(model, "--condition")
        return model.condition_from_names(split_names(condition), num)
    if prompt is not None:
        refuse_unconditional(model, "--prompt")
        return model.condition_from_prompt(prompt, num)
    return None
