"""Run-length schedules: the LR schedule spans exactly the run (its steps, or its max_time), resumes mid-schedule,
and image grids keep their cadence in step-limited runs."""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import lightning.pytorch as pl
import lightning.pytorch.callbacks.timer as timer_module
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


def test_a_run_without_any_length_cannot_derive_the_schedule(tmp_path, one_torch_thread):
    with pytest.raises(SystemExit) as exit_:
        run_cli(
            "fit", "--config", config_with_schedule(tmp_path), "--trainer.default_root_dir", tmp_path / "runs", "--trainer.max_epochs", "-1"
        )
    assert exit_.value.code == 2


def test_warmup_longer_than_the_derived_run_is_shortened_to_the_run():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = WarmupCosine(optimizer, warmup_steps=20)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1 / 20)
    with pytest.warns(UserWarning, match=r"warmup_steps=20 is longer than this run's 10 steps"):
        scheduler.set_total_steps(10)
    assert (scheduler.warmup_steps, scheduler.total_steps) == (10, 10)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1 / 10)  # the first step already uses the shorter ramp
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([(step + 1) / 10 for step in range(10)])


def test_an_explicit_total_steps_shorter_than_the_warmup_is_one_sentence():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(UserError, match=r"warmup_steps=20 and total_steps=10 from lr_scheduler.init_args.total_steps"):
        WarmupCosine(optimizer, warmup_steps=20, total_steps=10)


# -- max_time: the schedule follows the training time ----------------------------------------------------------
class FakeClock:
    """Stands in for the ``time`` module of Lightning's Timer: seconds pass only when a test callback ticks."""

    def __init__(self):
        self.seconds = 1000.0

    def monotonic(self) -> float:
        return self.seconds


CLOCK = FakeClock()


class OneSecondPerStep(pl.Callback):
    """Every optimizer step takes exactly one (fake) second; validation, grids and saving take none."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        CLOCK.seconds += 1.0


@pytest.fixture
def fake_timer_clock(monkeypatch):
    monkeypatch.setattr(timer_module, "time", CLOCK)
    return CLOCK


def expected_time_lr(step: int, time_fraction: float) -> float:
    """Warm-up ramp, capped by the cosine of the time spent (the step progress of these runs is smaller)."""
    ramp = min(1.0, (step + 1) / WARMUP)
    progress = min(1.0, time_fraction)
    return BASE_LR * min(ramp, MIN_RATIO + (1 - MIN_RATIO) * (1 + math.cos(math.pi * progress)) / 2)


def fit_on_the_fake_clock(tmp_path: Path, record: str, *extra: str) -> dict:
    path = tmp_path / f"{record}.json"
    callbacks = [f"{{class_path: test_schedules.LearningRates, init_args: {{path: {path}}}}}", "test_schedules.OneSecondPerStep"]
    options = [item for callback in callbacks for item in ("--trainer.callbacks+", callback)]
    run_cli(
        "fit",
        "--config",
        config_with_schedule(tmp_path),
        "--trainer.default_root_dir",
        tmp_path / "runs",
        *options,
        "--trainer.check_val_every_n_epoch",
        "1000",
        *extra,
    )
    return json.loads(path.read_text())


class LogLines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def lightning_info():
    handler = LogLines()
    logger = logging.getLogger("lightning.pytorch")
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


@pytest.mark.parametrize("max_epochs", ["1000", "-1"], ids=["max_epochs-and-max_time", "max_time-only"])
def test_a_max_time_stop_ends_at_the_floor_and_a_resume_continues_the_time_progress(
    tmp_path, one_torch_thread, fake_timer_clock, lightning_info, max_epochs
):
    # 10 (fake) seconds, one a step: the Timer stops the run after step 10, far before max_epochs (5 steps an epoch).
    first = fit_on_the_fake_clock(tmp_path, "first", "--trainer.max_epochs", max_epochs, "--trainer.max_time", "00:00:00:10")
    assert first["steps"] == 10
    for step, lr in enumerate(first["used"]):
        assert lr == pytest.approx(expected_time_lr(step, step / 10), rel=1e-9), step
    assert first["used"][-1] > BASE_LR * MIN_RATIO * 1.001  # the last step still learns above the floor …
    assert first["final"] == pytest.approx(BASE_LR * MIN_RATIO, rel=1e-12)  # … which the run ends at
    steps_part = "5,000 optimizer steps (from trainer.max_epochs) or " if max_epochs == "1000" else ""
    assert (
        f"LR schedule: WarmupCosine decays over {steps_part}trainer.max_time 0:00:10 of training time"
        + (", whichever ends the run first." if steps_part else ".")
        in lightning_info
    )

    # Resumed with 20 s in all: the Timer's checkpointed 10 s put the schedule half-way, and it goes on from there.
    lightning_info.clear()
    second = fit_on_the_fake_clock(
        tmp_path, "second", "--trainer.max_epochs", max_epochs, "--trainer.max_time", "00:00:00:20", "--ckpt_path", "last"
    )
    assert second["steps"] == 20 and len(second["used"]) == 10
    for offset, lr in enumerate(second["used"]):
        step = 10 + offset
        assert lr == pytest.approx(expected_time_lr(step, step / 20), rel=1e-9), step
    assert second["used"][0] == pytest.approx(BASE_LR * (MIN_RATIO + (1 - MIN_RATIO) / 2))  # mid-schedule, not the floor it stopped at
    assert second["final"] == pytest.approx(BASE_LR * MIN_RATIO, rel=1e-12)
    assert any(
        line.endswith(
            "trainer.max_time 0:00:20 of training time, 0:00:10 of it already trained"
            + (", whichever ends the run first." if steps_part else ".")
        )
        for line in lightning_info
    ), lightning_info


def test_a_resume_with_a_longer_max_steps_stretches_the_rest_of_the_schedule(tmp_path, one_torch_thread):
    config = config_with_schedule(tmp_path)
    fit_recording_lrs(tmp_path, config, "--trainer.max_steps", "6", "--trainer.max_epochs", "-1")
    resumed = fit_recording_lrs(tmp_path, config, "--trainer.max_steps", "12", "--trainer.max_epochs", "-1", "--ckpt_path", "last")
    assert resumed["steps"] == 12 and len(resumed["used"]) == 6
    for offset, lr in enumerate(resumed["used"]):
        assert lr == pytest.approx(expected_lr(6 + offset, 12), rel=1e-9), offset
    assert resumed["final"] == pytest.approx(BASE_LR * MIN_RATIO, rel=1e-12)


def test_without_max_time_the_schedule_says_it_follows_the_steps(tmp_path, one_torch_thread, lightning_info):
    fit_recording_lrs(tmp_path, config_with_schedule(tmp_path), "--trainer.max_steps", "6")
    assert "LR schedule: WarmupCosine decays over 6 optimizer steps (from trainer.max_steps)." in lightning_info


@pytest.mark.parametrize("name", ["celeba_ddim.yaml", "afhq_ddpm.yaml"])
def test_presets_derive_total_steps_from_the_run(name):
    schedule = yaml.safe_load((REPO / "configs" / name).read_text())["model"]["init_args"]["lr_scheduler"]
    assert schedule["class_path"].endswith("WarmupCosine") and "total_steps" not in schedule["init_args"]


def test_step_limited_run_draws_grids_every_n_epochs_and_at_the_end(tiny_config, tmp_path, one_torch_thread):
    # 2 steps an epoch, 8 steps = 4 epochs; grids every 3rd epoch: after epoch 3 and after the last (4).
    run_cli(
        "fit",
        "--config",
        tiny_config,
        "--trainer.default_root_dir",
        tmp_path / "runs",
        "--trainer.max_steps",
        "8",
        "--trainer.max_epochs",
        "-1",
        "--trainer.limit_train_batches",
        "2",
        "--trainer.limit_val_batches",
        "1",
        "--images.every_n_epochs",
        "3",
    )
    grids = sorted((tmp_path / "runs/tiny/version_0/images/samples").glob("*.png"))
    epochs = [int(re.match(r"epoch(\d+)", path.name).group(1)) for path in grids]
    assert epochs == [2, 3]
