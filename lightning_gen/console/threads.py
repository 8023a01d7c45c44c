"""One line when torch's threads oversubscribe the CPU cores (a shared or small machine, several ranks per node).

torch starts one intra-op thread per core. When other busy processes already hold some of those cores, or when
several processes of one run (DDP ranks on a node) each start as many threads as there are cores, the threads
wait on each other and a step can run several times slower than with fewer threads (measured: 4× slower on
a shared 2-core machine than ``OMP_NUM_THREADS=1``). The thread count is the user's to choose, and it is part
of what makes a resumed run bit-identical to an uninterrupted one, so lightning_gen suggests, it never changes it.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

from lightning_gen.console.progress import emit, is_rank_zero

LONG_COMMANDS = ("evaluate", "export", "downstream", "compare")  # the commands beside fit that compute for minutes


def suggested_threads(cores: int, runnable: int, ranks: int) -> int:
    """Threads per process that fit in the cores the other busy processes leave free (at least one)."""
    return max(1, (max(1, cores) - max(0, runnable)) // max(1, ranks))


def thread_advice(cores: int, runnable: int, ranks: int, threads: int) -> str | None:
    """The one line to print, or None when the threads fit.

    cores: usable CPU cores; runnable: other processes (threads) ready to run besides this run's; ranks: processes
    of this run on this machine; threads: torch threads per process. Oversubscribed when
    ``runnable + ranks × threads > cores`` and fewer threads per process would fit better.
    """
    cores, runnable, ranks, threads = max(1, cores), max(0, runnable), max(1, ranks), max(1, threads)
    if runnable + ranks * threads <= cores:
        return None
    better = suggested_threads(cores, runnable, ranks)
    if better >= threads:
        return None  # already as few as can help: the machine is simply busy
    busy = f"{runnable} other busy process{'es' if runnable != 1 else ''} and " if runnable else ""
    processes = f"{ranks} processes × {threads}" if ranks > 1 else f"{threads}"
    return (
        f"Threads: {busy}{processes} torch threads share {cores} CPU core{'s' if cores != 1 else ''}, which can make "
        f"steps several times slower; run with OMP_NUM_THREADS={better} (e.g. `OMP_NUM_THREADS={better} python -m lightning_gen ...`)."
    )


# -- reading the machine -------------------------------------------------------------------------------------------
def _affinity_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_cores() -> int:
    """Cores this process may run on (its affinity mask, within a cgroup CPU quota when one is set)."""
    cores = _affinity_cores()
    try:  # a container's cgroup v2 quota ("max 100000" = none)
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


PF_KTHREAD = 0x00200000  # kernel threads show as running now and then; they are not the user's processes


def _runnable_tasks_now(allowed: set[int], own: int) -> int:
    count = 0
    for stat in Path("/proc").glob("[0-9]*/task/[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the task ended meanwhile
            continue
        fields = text[text.rfind(")") + 2 :].split()
        # fields[0] is the state, fields[6] the flags, fields[36] the CPU the task last ran on (fields 3, 9, 39 of proc(5)).
        if len(fields) < 37 or fields[0] != "R" or int(stat.parts[2]) == own or int(fields[6]) & PF_KTHREAD:
            continue
        if int(fields[36]) in allowed:
            count += 1
    return count


def runnable_others(samples: int = 5, interval: float = 0.02) -> int:
    """Tasks of other processes ready to run on this process's cores: the median of a few looks at /proc
    (Linux), else the one-minute load average less this process."""
    if sys.platform.startswith("linux") and Path("/proc/self/stat").is_file():
        try:
            allowed = set(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            allowed = set(range(os.cpu_count() or 1))
        counts = []
        for index in range(samples):
            if index:
                time.sleep(interval)
            counts.append(_runnable_tasks_now(allowed, os.getpid()))
        return int(statistics.median(counts))
    try:
        return max(0, int(os.getloadavg()[0] + 0.5) - 1)
    except (AttributeError, OSError):
        return 0


def advise(ranks: int = 1, threads: int | None = None, siblings_running: bool = False) -> str | None:
    """Prints (and returns) the advice line for this machine now; on global rank 0 only, at most once per process.

    ``siblings_running``: the run's other ranks on this machine already run (a launcher such as srun started
    them), so they are not counted among the other busy processes."""
    global _advised
    if _advised or not is_rank_zero():
        return None
    threads = torch.get_num_threads() if threads is None else threads
    if threads <= 1 and ranks <= 1:
        return None  # nothing fewer to suggest; and no /proc walk for runs that already chose one thread
    others = runnable_others()
    if siblings_running:
        others = max(0, others - (ranks - 1))
    line = thread_advice(cpu_cores(), others, ranks, threads)
    if line is not None:
        _advised = True
        emit(line)
    return line


_advised = False


class ThreadAdvice(pl.Callback):
    """``advise`` once a Trainer's processes run (Lightning's DDP launchers have then set each rank's threads)."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer.is_global_zero:
            ranks = max(1, int(getattr(trainer.strategy, "num_processes", 1) or 1))  # this run's processes on this machine
            advise(ranks, torch.get_num_threads(), siblings_running=ranks > 1)
