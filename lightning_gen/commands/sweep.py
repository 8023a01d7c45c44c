"""``python -m lightning_gen sweep --config X.yaml --set model.init_args.kl_weight=1,2,0.5 [--set ...] [fit overrides]``.

Runs the grid (every combination of the ``--set`` values) one run after another, each as its own
``python -m lightning_gen fit`` process (its output streams to this terminal), all in one W&B group,
each run named after its values (``<sweep>-kl_weight=0.5``). Re-running the same command skips
finished runs and resumes an interrupted one with ``--ckpt_path last``. At the end it prints the
``compare`` command. ``--wandb_sweep_yaml FILE`` writes the equivalent W&B sweep config.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import yaml
from jsonargparse import ArgumentParser, Namespace

from lightning_gen.commands.common import command_parser
from lightning_gen.console.progress import Progress, duration
from lightning_gen.errors import UserError
from lightning_gen.metrics.runs import flatten

DESCRIPTION = "run a grid of config overrides one after another in one W&B group (skips finished runs, resumes interrupted ones)"
FINISHED_MARKER = "sweep_finished.json"


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--set", type=str, default=[], action="append", help="KEY=V1,V2,...: a config key and its values (repeat for a grid)"
    )
    parser.add_argument(
        "--name",
        type=Optional[str],
        default=None,
        help="sweep name = W&B group (default: the config's tracking.group or '<config stem>_sweep')",
    )
    parser.add_argument("--wandb_sweep_yaml", type=Optional[str], default=None, help="also write the equivalent W&B sweep config here")
    parser.add_argument("--dry_run", type=bool, default=False, help="print what would run, run nothing")


def parse_sets(sets: list[str]) -> dict[str, list[str]]:
    grid: dict[str, list[str]] = {}
    for item in sets:
        key, separator, values = item.partition("=")
        key = key.strip().lstrip("-")
        if not separator or not key or not values.strip():
            raise UserError(f"--set {item} is not KEY=V1,V2,...; write e.g. --set model.init_args.kl_weight=1,2,0.5.")
        if key in grid:
            raise UserError(f"--set names {key} twice; give all its values in one --set.")
        grid[key] = [value.strip() for value in values.split(",") if value.strip()]
    if not grid:
        raise UserError("sweep needs at least one --set KEY=V1,V2,... to vary.")
    return grid


def combinations(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def run_label(values: dict[str, str]) -> str:
    label = ",".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in values.items())
    return re.sub(r"[^A-Za-z0-9_.,=+-]+", "_", label)


def option_value(fit_args: list[str], option: str) -> str | None:
    for index, item in enumerate(fit_args):
        if item == option and index + 1 < len(fit_args):
            return fit_args[index + 1]
        if item.startswith(option + "="):
            return item.split("=", 1)[1]
    return None


def fit_config(fit_args: list[str]) -> Namespace:
    """The configuration fit sees for ``fit_args``: jsonargparse merges the config files and dotted overrides in order."""
    for index, item in enumerate(fit_args):
        if item == "--config" and index + 1 < len(fit_args) and not Path(fit_args[index + 1]).is_file():
            raise UserError(f"--config {fit_args[index + 1]} does not exist; pass a YAML config such as configs/quickstart.yaml.")
    return command_parser("sweep", sys.modules[__name__]).parse_args(fit_args)


def sweep_name(fit_args: list[str], given: str | None) -> str:
    if given:
        return given
    group = fit_config(fit_args).tracking.group
    if group:
        return group
    config = option_value(fit_args, "--config")
    return f"{Path(config).stem if config else 'default'}_sweep"


def root_directory(fit_args: list[str]) -> Path:
    return Path(fit_config(fit_args).trainer.default_root_dir or "runs")


def run_state(root: Path, experiment: str) -> str:
    """``finished``, ``interrupted`` (a last.ckpt without the finished marker) or ``new``."""
    versions = sorted((root / experiment).glob("version_*"))
    if any((version / FINISHED_MARKER).is_file() for version in versions):
        return "finished"
    if any((version / "checkpoints" / "last.ckpt").is_file() for version in versions):
        return "interrupted"
    return "new"


def mark_finished(root: Path, experiment: str, values: dict[str, str]) -> None:
    versions = [version for version in (root / experiment).glob("version_*") if (version / "checkpoints" / "last.ckpt").is_file()]
    if versions:
        newest = max(versions, key=lambda version: (version / "checkpoints" / "last.ckpt").stat().st_mtime)
        (newest / FINISHED_MARKER).write_text(json.dumps({"values": values, "finished_at": time.strftime("%Y-%m-%d %H:%M:%S")}))


def fit_in_subprocess(argv: list[str]) -> None:
    """One run of the sweep as its own process (a fresh interpreter: no state carried from the run before), its output
    going straight to this terminal. A sweep never imports the CLI back: commands are leaves."""
    sys.stdout.flush()
    completed = subprocess.run([sys.executable, "-m", "lightning_gen", "fit", *argv])
    if completed.returncode != 0:
        raise UserError(
            f"the sweep's run 'fit {' '.join(argv)}' exited with {completed.returncode}; fix it and re-run the "
            f"sweep (finished runs are skipped)."
        )


def wandb_sweep_config(name: str, grid: dict[str, list[str]], fit_args: list[str]) -> dict[str, Any]:
    """W&B's agent calls the same CLI with ``${args}`` = ``--key=value`` for each swept key."""
    parameters: dict[str, Any] = {key: {"values": [yaml.safe_load(value) for value in values]} for key, values in grid.items()}
    parameters["tracking.group"] = {"value": name}
    return {
        "name": name,
        "method": "grid",
        "command": ["${env}", "${interpreter}", "-m", "lightning_gen", "fit", *fit_args, "${args}"],
        "parameters": parameters,
    }


def run_sweep(sets: list[str], fit_args: list[str], name: str | None = None, fit: Callable[[list[str]], None] = fit_in_subprocess,
              dry_run: bool = False, wandb_sweep_yaml: str | None = None) -> list[tuple[str, str]]:  # fmt: skip
    """Runs the grid; returns (experiment, what happened) per run."""
    grid = parse_sets(sets)
    name = sweep_name(fit_args, name)
    root = root_directory(fit_args)
    if wandb_sweep_yaml:
        Path(wandb_sweep_yaml).parent.mkdir(parents=True, exist_ok=True)
        Path(wandb_sweep_yaml).write_text(yaml.safe_dump(wandb_sweep_config(name, grid, fit_args), sort_keys=False))
        print(f"Wrote the W&B sweep config {wandb_sweep_yaml} (wandb sweep {wandb_sweep_yaml}; wandb agent <sweep id>)")
    outcomes = []
    runs = combinations(grid)
    to_run = sum(run_state(root, f"{name}-{run_label(values)}") != "finished" for values in runs)
    clock = Progress(f"sweep {name}", to_run, "runs", enabled=False)  # no lines of its own: each fit prints its progress
    for number, values in enumerate(runs, 1):
        experiment = f"{name}-{run_label(values)}"
        state = run_state(root, experiment)
        if state == "finished":
            print(f"[{number}/{len(runs)}] {experiment}: finished before, skipped")
            outcomes.append((experiment, "skipped"))
            continue
        argv = [*fit_args, *(f"--{key}={value}" for key, value in values.items()), "--tracking.name", experiment, "--tracking.group", name]
        if state == "interrupted":
            argv += ["--ckpt_path", "last"]
        so_far = f" (sweep: {clock.status()})" if clock.done else ""
        print(
            f"[{number}/{len(runs)}] {experiment}: {'resuming' if state == 'interrupted' else 'starting'}{so_far}: fit {' '.join(argv)}",
            flush=True,
        )
        if not dry_run:
            fit(argv)
            mark_finished(root, experiment, values)
            clock.update()
        outcomes.append((experiment, "resumed" if state == "interrupted" else "ran"))
    if clock.done:
        print(f"Sweep {name}: {clock.done} runs in {duration(clock.elapsed)}")
    print(f"Compare the runs with:\n  python -m lightning_gen compare --group {name} --root {root} --out {root / (name + '_compare')}")
    return outcomes


SWEEP_KEYS = ("set", "name", "wandb_sweep_yaml", "dry_run", "config", "__default_config__", "ckpt_path", "weights_only")


def _encode(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def fit_arguments(args: Namespace) -> list[str]:
    """What the user gave for fit: the config files, then every key whose parsed value differs from the files' own.

    The shared parser has already merged ``--config`` and the dotted overrides; parsing the config files
    alone and comparing gives the overrides back, so each run is ``fit --config FILE... --key=value...``.
    """
    configs = [str(getattr(path, "relative", None) or path) for path in (args.get("config") or [])]
    config_args = [item for path in configs for item in ("--config", path)]
    parser = command_parser("sweep", sys.modules[__name__])
    files_only = flatten(parser.parse_args(config_args).as_dict())
    given = flatten(args.as_dict())
    overrides = [
        f"--{key}={_encode(value)}"
        for key, value in given.items()
        if key.split(".")[0] not in SWEEP_KEYS and files_only.get(key, object()) != value
    ]
    return config_args + overrides


def run(args: Namespace) -> None:
    run_sweep(list(args.set or []), fit_arguments(args), args.name, fit_in_subprocess, args.dry_run, args.wandb_sweep_yaml)
