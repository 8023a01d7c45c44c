"""Every fit validates (metrics, grids, best-k) at its last step and at least every images.every_n_minutes,
whatever its trainer cadence; such a validation changes nothing in the course of training."""

from __future__ import annotations

import csv
import random
import re
from pathlib import Path

import lightning.pytorch as pl
import lightning.pytorch.callbacks.timer as timer_module
import numpy as np
import pytest
import torch
from conftest import run_cli

import lightning_gen.callbacks.end_validation as end_validation

NO_SCHEDULED_VALIDATION = ["--trainer.check_val_every_n_epoch", "1000"]  # tiny config: 5 steps an epoch
GRIDS = ("reconstructions", "interpolations", "samples")


def fit(tiny_config: Path, root: Path, *extra: str) -> Path:
    run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", root, *extra)
    return root / "tiny/version_0"


def metric_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def validation_steps(run: Path) -> list[int]:
    """The global step of each validation, read off the grids (``epochNNNN-stepNNNNNNN.png``)."""
    return sorted(int(re.search(r"step(\d+)", path.name).group(1)) for path in (run / "images/samples").glob("*.png"))


def val_rows(run: Path) -> list[dict[str, str]]:
    return [row for row in metric_rows(run) if row.get("val/loss")]


def test_a_run_stopped_before_its_first_scheduled_validation_validates_at_its_last_step(tiny_config, tmp_path, one_torch_thread):
    run = fit(tiny_config, tmp_path / "runs", "--trainer.max_steps", "7", "--trainer.max_epochs", "-1", *NO_SCHEDULED_VALIDATION)
    rows = val_rows(run)
    assert len(rows) == 1 and {"val/loss", "val/psnr", "val/ssim"} <= {key for key, value in rows[0].items() if value}
    for grid in GRIDS:  # made at the final step (7, mid-epoch 1), not before
        assert [path.name for path in (run / "images" / grid).glob("*.png")] == ["epoch0001-step0000007.png"], grid
    assert (run / "checkpoints/best-epoch001-step0000007.ckpt").is_file()  # the final val/loss ranks a best-k checkpoint


class FakeClock:
    def __init__(self, start: float = 5000.0):
        self.seconds = start

    def monotonic(self) -> float:
        return self.seconds


CLOCK = FakeClock()


class OneMinutePerStep(pl.Callback):
    """Each optimizer step takes one (fake) minute, on the Timer's clock and the validation cadence's alike."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        CLOCK.seconds += 60.0


@pytest.fixture
def fake_clock(monkeypatch):
    monkeypatch.setattr(timer_module, "time", CLOCK)
    monkeypatch.setattr(end_validation, "now", CLOCK.monotonic)
    return CLOCK


def test_a_max_time_stop_validates_and_draws_grids_at_its_last_step(tiny_config, tmp_path, one_torch_thread, fake_clock):
    run = fit(
        tiny_config,
        tmp_path / "runs",
        "--trainer.max_epochs",
        "1000",
        "--trainer.max_time",
        "00:00:04:00",
        "--trainer.callbacks+",
        "test_end_validation.OneMinutePerStep",
        "--images.every_n_minutes",
        "0",
        *NO_SCHEDULED_VALIDATION,
    )
    assert torch.load(run / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 4
    assert validation_steps(run) == [4]
    assert len(val_rows(run)) == 1


def test_every_n_minutes_validates_mid_epoch_and_the_end_adds_its_own(tiny_config, tmp_path, one_torch_thread, fake_clock):
    run = fit(
        tiny_config,
        tmp_path / "runs",
        "--trainer.max_steps",
        "8",
        "--trainer.max_epochs",
        "-1",
        "--images.every_n_minutes",
        "3",
        "--trainer.callbacks+",
        "test_end_validation.OneMinutePerStep",
        *NO_SCHEDULED_VALIDATION,
    )
    assert validation_steps(run) == [3, 6, 8]
    assert len(val_rows(run)) == 3


def test_a_step_that_validates_anyway_validates_once(tiny_config, tmp_path, one_torch_thread):
    run = fit(tiny_config, tmp_path / "runs", "--trainer.max_epochs", "2")  # validates after each epoch: steps 5 and 10
    assert validation_steps(run) == [5, 10]
    assert len(val_rows(run)) == 2


def test_validate_at_end_can_be_switched_off(tiny_config, tmp_path, one_torch_thread):
    run = fit(
        tiny_config,
        tmp_path / "runs",
        "--trainer.max_steps",
        "7",
        "--trainer.max_epochs",
        "-1",
        "--images.validate_at_end",
        "false",
        *NO_SCHEDULED_VALIDATION,
    )
    assert validation_steps(run) == [] and val_rows(run) == []


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


class DrawsInValidation(pl.Callback):
    """A validation that draws from the global random streams, as some models' or callbacks' would."""

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        torch.rand(3), np.random.rand(3), random.random()


def test_a_run_resumed_after_its_final_validation_equals_an_uninterrupted_one(tiny_config, tmp_path, one_torch_thread):
    limits = ["--trainer.max_epochs", "-1", "--trainer.callbacks+", "test_end_validation.DrawsInValidation", *NO_SCHEDULED_VALIDATION]
    split = fit(tiny_config, tmp_path / "split", "--trainer.max_steps", "7", *limits)
    stopped = torch.load(split / "checkpoints/last.ckpt", weights_only=True)
    # last.ckpt was rewritten at the end of the final validation (mid-epoch), and knows it.
    assert stopped["global_step"] == 7 and stopped["callbacks"]["ValidationTrigger"] == {"validating_step": 7}
    # It holds the random streams of the step's end, as if nothing had validated (validation draws from them).
    unvalidated = fit(tiny_config, tmp_path / "unvalidated", "--trainer.max_steps", "7", "--images.validate_at_end", "false", *limits)
    rng, expected_rng = (
        torch.load(run / "checkpoints/last.ckpt", weights_only=True)["lightning_gen"]["rng"] for run in (split, unvalidated)
    )
    assert torch.equal(rng["torch"], expected_rng["torch"]) and torch.equal(rng["numpy"]["keys"], expected_rng["numpy"]["keys"])
    assert rng["python"] == expected_rng["python"]
    fit(tiny_config, tmp_path / "split", "--trainer.max_steps", "10", "--ckpt_path", "last", *limits)
    straight = fit(tiny_config, tmp_path / "straight", "--trainer.max_steps", "10", *limits)
    resumed, uninterrupted = (torch.load(run / "checkpoints/last.ckpt", weights_only=True) for run in (split, straight))
    assert resumed["global_step"] == uninterrupted["global_step"] == 10
    assert_same_tensors(resumed["current_model_state"], uninterrupted["current_model_state"])
    assert_same_tensors(resumed["state_dict"], uninterrupted["state_dict"])
    # The resumed loop carries on where the validation left it: metrics.csv (appended on resume) holds every training
    # step once, as the uninterrupted run's does (log_every_n_steps 1), and both sessions' final validations.
    train_steps = [int(row["step"]) for row in metric_rows(split) if row.get("train/loss")]
    assert train_steps == [int(row["step"]) for row in metric_rows(straight) if row.get("train/loss")] == list(range(10))
    assert validation_steps(split) == [7, 10]
