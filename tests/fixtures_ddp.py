"""What the 2-process DDP tests share: a tiny config with the rank probe, the launcher (Lightning's or torchrun) in a
subprocess, each rank's probe record, and the one run directory both ranks must agree on."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from conftest import REPO, TINY_CONFIG, process_env

from lightning_gen.runs.agreement import ENV_KEY

PROBE = {"class_path": "ddp_probe.Probe", "init_args": {"out_dir": "PROBE_DIR"}}


def ddp_config(tmp_path: Path, name: str, model: dict | None = None, **trainer: object) -> Path:
    config = copy.deepcopy(TINY_CONFIG)
    config["trainer"].update({"devices": 2, "strategy": "ddp", "max_epochs": 1, **trainer})
    config["trainer"]["callbacks"] = [{**PROBE, "init_args": {"out_dir": str(tmp_path / "probe" / name)}}]
    config["data"]["init_args"]["num_images"] = 80  # 72 training images: 2 steps of 16 per rank and epoch
    if model is not None:
        config["model"] = model
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def launch(*args: object, cwd: Path, torchrun: bool = False, timeout: float = 300) -> subprocess.CompletedProcess:
    env = process_env()
    env.pop(ENV_KEY, None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests")])
    env["OMP_NUM_THREADS"] = "1"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] if torchrun else [sys.executable]
    result = subprocess.run(
        [*launcher, "-m", "lightning_gen", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def probes(tmp_path: Path, name: str) -> list[dict]:
    return [torch.load(tmp_path / "probe" / name / f"rank{rank}.pt", weights_only=False) for rank in (0, 1)]


def assert_one_run(runs: Path, experiment: str) -> Path:
    assert sorted(path.name for path in (runs / experiment).iterdir() if not path.name.startswith(".")) == ["version_0"]
    return runs / experiment / "version_0"
