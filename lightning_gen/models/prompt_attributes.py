"""Free text → attribute names: the seed's "text prompt mapped to attributes", done by word matching.

Both the prompt and the vocabulary are normalised the same way (lowercase, ``+``/``_``/``-`` as spaces,
trailing plural ``s`` dropped), then every vocabulary phrase found as whole words in the prompt is kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lightning_gen.errors import UserError


def _singular(word: str) -> str:
    # Only the common English plural endings: "stripes" → "stripe", "horses" → "horse", "bushes" → "bush".
    if word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def normalise(text: str) -> list[str]:
    """Lowercase words with ``+``, ``_`` and ``-`` read as spaces and plurals made singular."""
    return [_singular(word) for word in re.findall(r"[a-z0-9]+", text.lower().replace("+", " ").replace("_", " "))]


def attributes_in_prompt(prompt: str, vocabulary: Sequence[str]) -> list[str]:
    """The vocabulary names whose words occur, in order and adjacent, in ``prompt``; in vocabulary order.

    Raises UserError listing the vocabulary when nothing in the prompt matches.
    """
    words = normalise(prompt)
    found = []
    for name in vocabulary:
        phrase = normalise(name)
        if phrase and any(words[i : i + len(phrase)] == phrase for i in range(len(words) - len(phrase) + 1)):
            found.append(name)
    if not found:
        raise UserError(f"--prompt '{prompt}' names none of this model's attributes; use words from: {', '.join(vocabulary)}.")
    return found
