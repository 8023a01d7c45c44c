"""Keep the output to what the user needs: the known noise of torch and Lightning is filtered here, in one place.

Filtered (``--verbose`` or ``LIGHTNING_GEN_VERBOSE=1`` shows them again):

- Lightning's "💡 Tip: … litlogger …" line at every Trainer start (an advertisement; Lightning has no
  switch for it, so a logging filter drops that one record);
- torch's "`isinstance(treespec, LeafSpec)` is deprecated" FutureWarning, which Lightning's own pytree code
  triggers at every fit;
- torch's "`torch.jit.load` is deprecated" FutureWarning, for the TorchScript feature extractors the
  evaluation docs recommend (they load fine; the warning is about torch's future, not the user's file).

Lightning's "`weights_only` was not set, defaulting to `False`" is not filtered: lightning_gen passes
``weights_only`` explicitly wherever it saves (a full, resumable checkpoint: False) and reads (True).
"""

from __future__ import annotations

import logging
import os
import warnings

ENV_VERBOSE = "LIGHTNING_GEN_VERBOSE"
VERBOSE_FLAG = "--verbose"

NOISY_WARNINGS = (
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
    (r"`torch\.jit\.load` is (deprecated|not supported in Python)", FutureWarning),
)
NOISY_LOG_RECORDS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class _DropNoise(logging.Filter):
    """Drops the log records lightning_gen knows to be noise (Lightning's litlogger tip)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record that cannot format itself is not ours to judge
            return True
        return not ("litlogger" in message and message.lstrip().startswith("💡"))


_FILTER = _DropNoise()


def take_verbose(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--verbose``, and whether it (or LIGHTNING_GEN_VERBOSE=1) asked for the full output."""
    verbose = VERBOSE_FLAG in argv or os.environ.get(ENV_VERBOSE, "").strip().lower() in ("1", "true", "yes")
    return [item for item in argv if item != VERBOSE_FLAG], verbose


def is_verbose() -> bool:
    return os.environ.get(ENV_VERBOSE, "").strip().lower() in ("1", "true", "yes")


def quiet(verbose: bool = False) -> None:
    """Installs the filters (idempotent); ``verbose=True`` removes them and exports LIGHTNING_GEN_VERBOSE=1 so the
    processes a run starts (DDP ranks, a sweep's fits) show everything too."""
    loggers = [logging.getLogger(name) for name in NOISY_LOG_RECORDS]
    if verbose:
        os.environ[ENV_VERBOSE] = "1"
        for logger in loggers:
            logger.removeFilter(_FILTER)
        for message, category in NOISY_WARNINGS:
            warnings.filterwarnings("default", message=message, category=category)
        return
    for message, category in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for logger in loggers:
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
