"""Live progress that also works when the output is not a terminal (a Colab ``!python`` cell, nohup, a SLURM log).

A terminal (or a notebook kernel) gets a tqdm bar, shown once a loop has run for a few seconds. Anywhere
else a bar's ``\\r`` updates are buffered and appear only when the process ends, so instead one plain,
flushed line is printed a few seconds after the start and then every ``LIGHTNING_GEN_PROGRESS_SECONDS``
(30 by default) seconds::

    real features of ImageFolderDataModule test (950 images): 512/950 img (54%), 3.1 img/s, ETA 0:02:21, elapsed 0:02:45

``LIGHTNING_GEN_PROGRESS=lines|bar|off`` overrides the choice. Training shows the same kind of line through
:class:`lightning_gen.callbacks.progress.LineProgress`, which uses :func:`line_mode` and :func:`interval_seconds`.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO, TypeVar

ENV_MODE = "LIGHTNING_GEN_PROGRESS"  # auto (default), lines, bar or off
ENV_SECONDS = "LIGHTNING_GEN_PROGRESS_SECONDS"
DEFAULT_SECONDS = 30.0
FIRST_LINE_SECONDS = 5.0  # the first line (or the bar) comes this soon; quick loops print nothing

T = TypeVar("T")


def mode() -> str:
    """``lines``, ``bar`` or ``off``: the environment's choice, else a bar for a terminal or a notebook kernel."""
    chosen = os.environ.get(ENV_MODE, "auto").strip().lower()
    if chosen in ("lines", "bar", "off"):
        return chosen
    return "bar" if _interactive(sys.stdout) else "lines"


def line_mode() -> bool:
    return mode() == "lines"


def _interactive(stream: Any) -> bool:
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False
    # A notebook running the code in its own kernel renders \r updates (and widgets); `!python` cells are pipes.
    return type(stream).__name__ == "OutStream" and "ipykernel" in sys.modules


def interval_seconds() -> float:
    """Seconds between two progress lines (``LIGHTNING_GEN_PROGRESS_SECONDS``, default 30)."""
    text = os.environ.get(ENV_SECONDS)
    try:
        value = float(text) if text else DEFAULT_SECONDS
    except ValueError:
        return DEFAULT_SECONDS
    return value if math.isfinite(value) and value >= 0 else DEFAULT_SECONDS


def first_line_seconds(every: float | None = None) -> float:
    return min(FIRST_LINE_SECONDS, interval_seconds() if every is None else every)


def is_rank_zero() -> bool:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def duration(seconds: float) -> str:
    """``0:00:07``, ``1:02:03``, ``2 days, 3:04:05`` (like Lightning's bar)."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(max(0.0, seconds) + 0.5)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    text = f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{days} day{'s' if days > 1 else ''}, {text}" if days else text


def rate(count: float, seconds: float, unit: str = "it") -> str:
    """``12.3 it/s``; below one per second still in the same unit (``0.12 it/s``), so a log greps the same."""
    if seconds <= 0 or count <= 0:
        return f"? {unit}/s"
    value = count / seconds
    digits = 0 if value >= 100 else 1 if value >= 10 else 2 if value >= 0.1 else 4
    return f"{value:.{digits}f} {unit}/s"


def eta(done: float, total: float | None, seconds: float) -> float:
    """Seconds left at the average pace so far (inf when unknown)."""
    if not total or not math.isfinite(total) or done <= 0 or seconds <= 0:
        return math.inf
    return max(0.0, (total - done) * seconds / done)


def emit(line: str, stream: TextIO | None = None) -> None:
    """One progress line, flushed at once (a pipe would otherwise hold it back). A closed pipe (``| head``) never
    stops the work: the line is dropped."""
    try:
        print(line, file=stream or sys.stdout, flush=True)
    except (BrokenPipeError, ValueError, OSError):  # ValueError: a closed file
        pass


class Progress:
    """Counts work done; prints a line every few seconds in a pipe, or drives a tqdm bar in a terminal.

    ``with Progress("export", total=n, unit="img") as progress: ... progress.update(len(batch))``; see also
    :func:`track`. ``every`` overrides the interval in seconds (0: a line at every update). Disabled on every
    rank but 0 of a multi-process run, and by ``enabled=False``.
    """

    def __init__(self, what: str, total: int | float | None = None, unit: str = "it", every: float | None = None,
                 enabled: bool = True, stream: TextIO | None = None):  # fmt: skip
        self.what = what
        self.total = total
        self.unit = unit
        self.done = 0
        self.stream = stream
        self.every = interval_seconds() if every is None else every
        self.started = time.monotonic()
        self.last_line: float | None = None
        self.lines = 0
        chosen = mode() if enabled and is_rank_zero() else "off"
        self._bar = None
        self._lines = chosen == "lines"
        if chosen == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=what, unit=unit, delay=first_line_seconds(self.every), dynamic_ncols=True, file=stream)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def status(self) -> str:
        """``512/950 img (54%), 3.1 img/s, ETA 0:02:21, elapsed 0:02:45`` (what is known of it)."""
        elapsed = self.elapsed
        parts = [f"{self.done}/{self.total} {self.unit}" if self.total else f"{self.done} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.0f}%)"
        parts.append(rate(self.done, elapsed, self.unit))
        if self.total:
            parts.append(f"ETA {duration(eta(self.done, self.total, elapsed))}")
        parts.append(f"elapsed {duration(elapsed)}")
        return ", ".join(parts)

    def update(self, count: int = 1) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
        elif self._lines:
            now = time.monotonic()
            due = self.started + first_line_seconds(self.every) if self.last_line is None else self.last_line + self.every
            if now >= due and not (self.total and self.done >= self.total):  # the last update gets close()'s line
                self._print(f"{self.what}: {self.status()}", now)

    def _print(self, line: str, now: float) -> None:
        emit(line, self.stream)
        self.last_line = now
        self.lines += 1

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._lines:
            self._lines = False
            if self.lines or self.elapsed >= first_line_seconds(self.every):
                self._print(
                    f"{self.what}: done, {self.done} {self.unit} in {duration(self.elapsed)} ({rate(self.done, self.elapsed, self.unit)})",
                    time.monotonic(),
                )


def track(
    iterable: Iterable[T], what: str, total: int | float | None = None, unit: str = "it", count: Any = None, **options: Any
) -> Iterator[T]:
    """Yields ``iterable``'s items with progress; ``count(item)`` says how many units an item is (default 1)."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with Progress(what, total, unit, **options) as progress:
        for item in iterable:
            yield item
            progress.update(count(item) if count is not None else 1)
