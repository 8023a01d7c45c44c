"""Whole-process start-up of lightning_gen's commands against the floor ``python -c "import torch, lightning"``.

    python benchmarks/startup.py                                 # this checkout, 5 rounds
    python benchmarks/startup.py --tree /tmp/startup-base --repeats 7   # and another checkout, interleaved

Every round runs the floor once, then each case for each tree (``PYTHONPATH=TREE``), in turn, so load on a
shared machine falls on all of them alike. Each process is timed whole: wall seconds and CPU seconds
(user + system, from the child's rusage: steadier than wall time when other jobs compete for the cores).
The table gives min and median over the rounds and each figure's ratio to the floor's (min to min, median
to median). ``sample --num 1`` reads a tiny checkpoint made first by a quickstart ``fast_dev_run`` of each
tree; ``fit`` is ``--config configs/quickstart.yaml --trainer.fast_dev_run 1`` in a fresh folder each time.
"""

from __future__ import annotations

import argparse
import builtins
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLOOR = ("floor: import torch, lightning", ["-c", "import torch, lightning"])
QUICKSTART = "configs/quickstart.yaml"
FAST_DEV_RUN = ["fit", "--config", QUICKSTART, "--trainer.fast_dev_run", "1", "--trainer.default_root_dir", "runs"]


def cases(checkpoint: str) -> list[tuple[str, list[str]]]:
    cli = ["-m", "lightning_gen"]
    return [
        ("--help", [*cli, "--help"]),
        ("fit --help", [*cli, "fit", "--help"]),
        ("sample --help", [*cli, "sample", "--help"]),
        ("evaluate --help", [*cli, "evaluate", "--help"]),
        ("sample --num 1", [*cli, "sample", "--ckpt_path", checkpoint, "--num", "1", "--out", "sample.png", "--device", "cpu"]),
        ("fit quickstart fast_dev_run", [*cli, *FAST_DEV_RUN]),
    ]


def environment(tree: Path, threads: int) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1"}
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    return env


def timed(args: list[str], tree: Path, threads: int, cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one whole ``python ARGS`` process (its output is discarded; a failure stops the run)."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, *args], cwd=cwd, env=environment(tree, threads), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    error = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if process.returncode != 0:
        raise SystemExit(f"`python {' '.join(args)}` (PYTHONPATH={tree}) failed with {process.returncode}:\n{error[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def tiny_checkpoint(tree: Path, threads: int, folder: Path) -> str:
    """A quickstart fast_dev_run of the tree (also warms the file cache); its last.ckpt is the sample case's checkpoint."""
    args = ["-m", "lightning_gen", *FAST_DEV_RUN]
    args[args.index(QUICKSTART)] = str(tree / QUICKSTART)
    timed(args, tree, threads, folder)
    found = sorted(folder.glob("runs/**/last.ckpt"))
    if not found:
        raise SystemExit(f"the quickstart fast_dev_run of {tree} wrote no last.ckpt under {folder}/runs")
    return str(found[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", default=[], help="another checkout to time too (repeatable); this one always")
    parser.add_argument("--repeats", type=int, default=5, help="rounds (each: floor, then every case of every tree)")
    parser.add_argument("--threads", type=int, default=1, help="OMP/MKL threads of every process (the machine is shared)")
    parser.add_argument("--only", action="append", default=[], help="time only the cases whose name contains this")
    args = parser.parse_args()
    trees = [REPO, *(Path(tree).resolve() for tree in args.tree)]
    work = Path(tempfile.mkdtemp(prefix="lightning_gen_startup_"))
    checkpoints = {}
    for index, tree in enumerate(trees):
        folder = work / f"checkpoint_{index}"
        folder.mkdir()
        checkpoints[tree] = tiny_checkpoint(tree, args.threads, folder)
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for round_index in range(args.repeats):
        times.setdefault(("", FLOOR[0]), []).append(timed(FLOOR[1], REPO, args.threads, work))
        for index, tree in enumerate(trees):
            for name, case_args in cases(checkpoints[tree]):
                if args.only and not any(part in name for part in args.only):
                    continue
                folder = work / f"round{round_index}_tree{index}_{name.replace(' ', '_').replace('-', '')}"
                folder.mkdir()
                case_args = [str(tree / QUICKSTART) if arg == QUICKSTART else arg for arg in case_args]
                times.setdefault((str(tree), name), []).append(timed(case_args, tree, args.threads, folder))
        print(f"round {round_index + 1}/{args.repeats} done", file=sys.stderr, flush=True)
        if round_index + 1 < args.repeats:
            print_table(times, trees, args, file=sys.stderr)  # the figures so far, should a loaded machine cut the run short
    print_table(times, trees, args)


def print_table(times: dict[tuple[str, str], list[tuple[float, float]]], trees: list[Path], args: argparse.Namespace, file=None) -> None:
    floor = times[("", FLOOR[0])]
    floor_stats = {kind: (min(t[kind] for t in floor), statistics.median(t[kind] for t in floor)) for kind in (0, 1)}
    print = functools.partial(builtins.print, file=file or sys.stdout)
    print(
        f"\nWhole processes, {len(times[('', FLOOR[0])])} of {args.repeats} interleaved rounds, {args.threads} thread(s) each; "
        "x = case / floor (min/min, median/median)"
    )
    header = f"{'tree':<22} {'case':<30} {'wall min':>8} {'x':>5} {'wall med':>8} {'x':>5} {'cpu min':>8} {'x':>5} {'cpu med':>8} {'x':>5}"
    print(header)
    print("-" * len(header))
    for (tree, name), measured in times.items():
        cells = []
        for kind in (0, 1):
            low, middle = min(t[kind] for t in measured), statistics.median(t[kind] for t in measured)
            cells += [f"{low:8.2f}", f"{low / floor_stats[kind][0]:5.2f}", f"{middle:8.2f}", f"{middle / floor_stats[kind][1]:5.2f}"]
        label = "-" if not tree else ("this checkout" if Path(tree) == REPO else Path(tree).name)
        print(f"{label:<22} {name:<30} {' '.join(cells)}")


if __name__ == "__main__":
    main()
