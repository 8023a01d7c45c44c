"""Every way a fit ends saves last.ckpt first: a signal, max_time, max_steps mid-epoch, an exception mid-validation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from conftest import REPO, TINY_CONFIG, process_env, run_cli

TESTS = Path(__file__).resolve().parent
NO_VALIDATION = ["--trainer.check_val_every_n_epoch", "1000"]  # no validation, hence no checkpoint but the run-end one


class StepRecorder(pl.Callback):
    """Writes the step reached after every optimizer step (and waits a little, so a signal lands mid-training)."""

    def __init__(self, path: str, delay: float = 0.0):
        self.path = Path(path)
        self.delay = delay

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.path.write_text(str(trainer.global_step))
        time.sleep(self.delay)


class FailInValidation(pl.Callback):
    """Raises in the middle of the first validation epoch, while EMA's weights are swapped into the model."""

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            raise RuntimeError("a bug in validation")


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def recorder(path: Path, delay: float = 0.0) -> str:
    return yaml.safe_dump({"class_path": "test_run_end_saves.StepRecorder", "init_args": {"path": str(path), "delay": delay}}, default_flow_style=True).strip()


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow), pytest.param(signal.SIGUSR1, marks=pytest.mark.slow)])
def test_a_signal_mid_training_saves_last_ckpt_at_the_step_reached(tmp_path, signum):
    config = {**TINY_CONFIG, "trainer": {**TINY_CONFIG["trainer"], "max_epochs": 1000}}
    config_path = tmp_path / "signalled.yaml"
    config_path.write_text(yaml.safe_dump(config))
    steps = tmp_path / "steps.txt"
    env = {**process_env(), "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
    process = subprocess.Popen(
        [sys.executable, "-m", "lightning_gen", "fit", "--config", str(config_path), "--trainer.default_root_dir", str(tmp_path / "runs"),
         "--trainer.callbacks+", recorder(steps, delay=0.2), *NO_VALIDATION],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (steps.is_file() and steps.read_text() and int(steps.read_text()) >= 3):
        time.sleep(0.1)
    process.send_signal(signum)
    output, _ = process.communicate(timeout=120)
    reached = int(steps.read_text())
    last = tmp_path / "runs/signalled/version_0/checkpoints/last.ckpt"
    assert last.is_file(), output[-3000:]
    checkpoint = load(last)
    assert checkpoint["global_step"] == reached >= 3
    assert reached < 100  # stopped, not run to the end
    assert f"Saved {last} at step {reached}" in output
    # Raw and EMA weights are stored apart (the save came before EMA's end-of-training copy).
    assert any(not torch.equal(checkpoint["state_dict"][k], checkpoint["current_model_state"][k]) for k in checkpoint["state_dict"])
    assert not list(last.parent.glob(".*.partial"))


def test_max_time_stop_saves_last_ckpt_at_the_final_step(tiny_config, tmp_path, one_torch_thread):
    steps = tmp_path / "steps.txt"
    run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path, "--trainer.max_epochs", "1000",
            "--trainer.max_time", "00:00:00:04", "--trainer.callbacks+", recorder(steps, delay=0.3), *NO_VALIDATION)
    reached = int(steps.read_text())
    assert 3 <= reached < 100
    assert load(tmp_path / "tiny/version_0/checkpoints/last.ckpt")["global_step"] == reached


def test_max_steps_mid_epoch_saves_the_same_last_ckpt_as_a_periodic_save_at_that_step(tiny_config, tmp_path, one_torch_thread):
    # 5 steps an epoch: step 7 is mid-epoch. The reference run's periodic checkpoint at step 7 is written during
    # the step (before any end-of-training hook), so both last.ckpt files must hold the same weights.
    run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "end", "--trainer.max_steps", "7", *NO_VALIDATION)
    run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "periodic", "--trainer.max_steps", "7",
            "--checkpointing.every_n_steps", "7", *NO_VALIDATION)
    at_end = load(tmp_path / "end/tiny/version_0/checkpoints/last.ckpt")
    periodic = load(tmp_path / "periodic/tiny/version_0/checkpoints/periodic-step0000007.ckpt")
    assert at_end["global_step"] == periodic["global_step"] == 7
    assert_same_tensors(at_end["state_dict"], periodic["state_dict"])  # EMA weights
    assert_same_tensors(at_end["current_model_state"], periodic["current_model_state"])  # raw weights


def test_an_exception_mid_validation_saves_raw_and_ema_weights_unswapped(tiny_config, tmp_path, one_torch_thread):
    failing = '{"class_path": "test_run_end_saves.FailInValidation"}'
    with pytest.raises(RuntimeError, match="a bug in validation"):
        run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "failed", "--trainer.callbacks+", failing)
    run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "reference", "--trainer.max_steps", "5",
            "--checkpointing.every_n_steps", "5", *NO_VALIDATION)
    failed = load(tmp_path / "failed/tiny/version_0/checkpoints/last.ckpt")
    reference = load(tmp_path / "reference/tiny/version_0/checkpoints/periodic-step0000005.ckpt")
    assert failed["global_step"] == reference["global_step"] == 5
    assert_same_tensors(failed["state_dict"], reference["state_dict"])
    assert_same_tensors(failed["current_model_state"], reference["current_model_state"])
