"""Run-length schedules: the LR schedule spans exactly the run, and image grids keep their cadence in step-limited runs."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml

from conftest import REPO, TINY_CONFIG, run_cli
from lightning_gen.errors import UserError
from lightning_gen.models.schedules import WarmupCosine

BASE_LR, WARMUP, MIN_RATIO = 0.003, 2, 0.25


class LearningRates(pl.Callback):
    """Writes the LR each optimizer step used, and the LR the run ended with, to a JSON file."""

    def __init__(self, path: str):
        self.path = path
        self.used: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.used.append(optimizer.param_groups[0]["lr"])

    def on_train_end(self, trainer, pl_module):
        final = trainer.optimizers[0].param_groups[0]["lr"]
        Path(self.path).write_text(json.dumps({"used": self.used, "final": final, "steps": trainer.global_step}))


def expected_lr(step: int, total: int) -> float:
    """Warm-up then cosine, written out independently of WarmupCosine."""
    if step < WARMUP:
        return BASE_LR * (step + 1) / WARMUP
    progress = min(1.0, (step - WARMUP) / (total - WARMUP))
    return BASE_LR * (MIN_RATIO + (1 - MIN_RATIO) * (1 + math.cos(math.pi * progress)) / 2)


def config_with_schedule(tmp_path: Path, **schedule) -> Path:
    config = json.loads(json.dumps(TINY_CONFIG))
    config["model"]["init_args"]["lr_scheduler"] = {
        "class_path": "lightning_gen.models.schedules.WarmupCosine",
        "init_args": {"warmup_steps": WARMUP, "min_lr_ratio": MIN_RATIO, **schedule},
    }
    path = tmp_path / "scheduled.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def fit_recording_lrs(tmp_path: Path, config: Path, *extra: str) -> dict:
    record = tmp_path / "lrs.json"
    recorder = f"{{class_path: test_schedules.LearningRates, init_args: {{path: {record}}}}}"
    run_cli("fit", "--config", config, "--trainer.default_root_dir", tmp_path / "runs", "--trainer.callbacks+", recorder, *extra)
    return json.loads(record.read_text())


@pytest.mark.parametrize("limit", [["--trainer.max_epochs", "2"], ["--trainer.max_epochs", "3", "--trainer.accumulate_grad_batches", "2"]])
def test_lr_reaches_its_final_value_exactly_at_the_end_of_the_run(tmp_path, one_torch_thread, limit):
    lrs = fit_recording_lrs(tmp_path, config_with_schedule(tmp_path), *limit)
    total = lrs["steps"]
    used = lrs["used"]
    assert len(used) == total > WARMUP + 2
    for step, lr in enumerate(used):
        assert lr == pytest.approx(expected_lr(step, total), rel=1e-9), step
    assert used[-1] > BASE_LR * MIN_RATIO * 1.001  # the last step still learns above the floor …
    assert lrs["final"] == pytest.approx(BASE_LR * MIN_RATIO, rel=1e-12)  # … which the schedule reaches as the run ends


def test_an_explicit_total_steps_is_kept(tmp_path, one_torch_thread):
    lrs = fit_recording_lrs(tmp_path, config_with_schedule(tmp_path, total_steps=4), "--trainer.max_epochs", "2")
    assert lrs["used"][4:] and all(lr == pytest.approx(BASE_LR * MIN_RATIO, rel=1e-12) for lr in lrs["used"][4:])


def test_a_run_without_a_length_cannot_derive_the_schedule(tmp_path, one_torch_thread):
    with pytest.raises(SystemExit) as exit_:
        run_cli("fit", "--config", config_with_schedule(tmp_path), "--trainer.default_root_dir", tmp_path / "runs",
                "--trainer.max_epochs", "-1", "--trainer.max_time", "00:00:00:05")  # fmt: skip
    assert exit_.value.code == 2


def test_warmup_longer_than_the_run_is_one_sentence():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = WarmupCosine(optimizer, warmup_steps=20)
    with pytest.raises(UserError, match=r"warmup_steps=20 and total_steps=10 from the run's length"):
        scheduler.set_total_steps(10)


@pytest.mark.parametrize("name", ["celeba_ddim.yaml", "afhq_ddpm.yaml"])
def test_presets_derive_total_steps_from_the_run(name):
    schedule = yaml.safe_load((REPO / "configs" / name).read_text())["model"]["init_args"]["lr_scheduler"]
    assert schedule["class_path"].endswith("WarmupCosine") and "total_steps" not in schedule["init_args"]


def test_step_limited_run_draws_grids_every_n_epochs_and_at_the_end(tiny_config, tmp_path, one_torch_thread):
    # 2 steps an epoch, 8 steps = 4 epochs; grids every 3rd epoch: after epoch 3 and after the last (4).
    run_cli(
        "fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "runs", "--trainer.max_steps", "8",
        "--trainer.max_epochs", "-1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--images.every_n_epochs", "3",
    )  # fmt: skip
    grids = sorted((tmp_path / "runs/tiny/version_0/images/samples").glob("*.png"))
    epochs = [int(re.match(r"epoch(\d+)", path.name).group(1)) for path in grids]
    assert epochs == [2, 3]
