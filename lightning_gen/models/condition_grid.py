"""Which conditions a validation "conditions" grid shows, and how many fixed noises per row.

Every class (or attribute, each alone) gets a row up to MAX_CONDITION_ROWS, enough for CelebA's 40
attributes; beyond that (e.g. 400 NABirds classes) the grid shows a fixed subset of MAX_CONDITION_ROWS
conditions evenly spaced over the vocabulary (indices round(linspace(0, K − 1, 40)), always including the
first and the last), the same in every epoch. Rows are in vocabulary order. With more than
MANY_ROWS rows each row has fewer columns, so the grid stays about as wide as it is readable.
"""

from __future__ import annotations

import torch

MAX_CONDITION_ROWS = 40
MANY_ROWS = 12
COLUMNS, COLUMNS_WHEN_MANY = 8, 4


def shown_conditions(count: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Indices of the conditions shown: all of them up to MAX_CONDITION_ROWS, else that many evenly spaced."""
    if count <= MAX_CONDITION_ROWS:
        return torch.arange(count, device=device)
    return torch.linspace(0, count - 1, MAX_CONDITION_ROWS, device=device).round().long()


def columns_for(rows: int) -> int:
    return COLUMNS if rows <= MANY_ROWS else COLUMNS_WHEN_MANY
