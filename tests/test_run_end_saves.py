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

from lightning_gen.checkpoints.run_end import requeue_slurm_job

TESTS = Path(__file__).resolve().parent
NO_VALIDATION = ["--trainer.check_val_every_n_epoch", "1000"]  # no validation, hence no checkpoint but the run-end one


class StepRecorder(pl.Callback):
    """Writes the step reached after every optimizer step and waits a little, so a signal lands mid-training
    (only after step ``sleep_at`` when given, so a max_time limit runs out there whatever the machine's speed)."""

    def __init__(self, path: str, delay: float = 0.0, sleep_at: int | None = None):
        self.path = Path(path)
        self.delay = delay
        self.sleep_at = sleep_at

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.path.write_text(str(trainer.global_step))
        if self.sleep_at is None or trainer.global_step == self.sleep_at:
            time.sleep(self.delay)


class FailInValidation(pl.Callback):
    """Raises in the middle of the first validation epoch, while EMA's weights are swapped into the model."""

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            raise RuntimeError("a bug in validation")


class CtrlCAtStep(pl.Callback):
    """Presses Ctrl-C (SIGINT to this process) at the end of the given step, as a notebook's interrupt button does."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def recorder(path: Path, delay: float = 0.0, sleep_at: int | None = None) -> str:
    init_args = {"path": str(path), "delay": delay, "sleep_at": sleep_at}
    return yaml.safe_dump({"class_path": "test_run_end_saves.StepRecorder", "init_args": init_args}, default_flow_style=True).strip()


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, pytest.param(signal.SIGUSR1, marks=pytest.mark.slow)])
def test_a_signal_mid_training_saves_last_ckpt_at_the_step_reached(tmp_path, signum):
    """... and the process exits 128 + the signal (143 for SIGTERM, 130 for Ctrl-C), saying how to continue:
    a scheduler or script must not read a stopped run as a finished one."""
    config = {**TINY_CONFIG, "trainer": {**TINY_CONFIG["trainer"], "max_epochs": 1000}}
    config_path = tmp_path / "signalled.yaml"
    config_path.write_text(yaml.safe_dump(config))
    steps = tmp_path / "steps.txt"
    env = {**process_env(), "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lightning_gen",
            "fit",
            "--config",
            str(config_path),
            "--trainer.default_root_dir",
            str(tmp_path / "runs"),
            "--trainer.callbacks+",
            recorder(steps, delay=0.2),
            *NO_VALIDATION,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
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
    assert process.returncode == 128 + signum, output[-3000:]
    name = signal.Signals(signum).name
    assert f"Stopped by {name}; continue from {last} with: python -m lightning_gen fit --config {config_path} " in output
    assert output.rstrip().endswith(" --ckpt_path last")
    assert "Traceback" not in output
    # Raw and EMA weights are stored apart (the save came before EMA's end-of-training copy).
    assert any(not torch.equal(checkpoint["state_dict"][k], checkpoint["current_model_state"][k]) for k in checkpoint["state_dict"])
    assert not list(last.parent.glob(".*.partial"))


def test_max_time_stop_saves_last_ckpt_at_the_final_step_and_resumes_exactly(tiny_config, tmp_path, one_torch_thread):
    steps = tmp_path / "steps.txt"
    limits = ["--trainer.max_epochs", "1000", *NO_VALIDATION]
    # The 6 s limit runs out while the recorder waits 7 s after step 7 (5 steps an epoch: mid-epoch).
    run_cli(
        "fit",
        "--config",
        tiny_config,
        "--trainer.default_root_dir",
        tmp_path / "split",
        "--trainer.max_time",
        "00:00:00:06",
        "--trainer.callbacks+",
        recorder(steps, delay=7, sleep_at=7),
        *limits,
    )
    reached = int(steps.read_text())
    assert reached == 7
    last = tmp_path / "split/tiny/version_0/checkpoints/last.ckpt"
    assert load(last)["global_step"] == reached
    # The stop is saved where a periodic save would be, so a resume carries on mid-epoch as if never stopped.
    end = ["--trainer.max_steps", str(reached + 3)]
    run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "split", "--ckpt_path", "last", *end, *limits)
    run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "straight", *end, *limits)
    resumed, straight = load(last), load(tmp_path / "straight/tiny/version_0/checkpoints/last.ckpt")
    assert resumed["global_step"] == straight["global_step"] == reached + 3
    assert_same_tensors(resumed["current_model_state"], straight["current_model_state"])
    assert_same_tensors(resumed["state_dict"], straight["state_dict"])


def test_max_steps_mid_epoch_saves_last_ckpt_and_resumes_exactly(tiny_config, tmp_path, one_torch_thread):
    # 5 steps an epoch: step 7 is mid-epoch.
    run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "split", "--trainer.max_steps", "7", *NO_VALIDATION)
    last = tmp_path / "split/tiny/version_0/checkpoints/last.ckpt"
    stopped = load(last)
    assert stopped["global_step"] == 7
    # Raw and EMA weights stored apart: the save came before EMA's end-of-training copy of the average.
    assert any(not torch.equal(stopped["state_dict"][k], stopped["current_model_state"][k]) for k in stopped["state_dict"])
    run_cli(
        "fit",
        "--config",
        tiny_config,
        "--trainer.default_root_dir",
        tmp_path / "split",
        "--trainer.max_steps",
        "10",
        "--ckpt_path",
        "last",
        *NO_VALIDATION,
    )
    run_cli(
        "fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "straight", "--trainer.max_steps", "10", *NO_VALIDATION
    )
    resumed, straight = load(last), load(tmp_path / "straight/tiny/version_0/checkpoints/last.ckpt")
    assert resumed["global_step"] == straight["global_step"] == 10
    assert_same_tensors(resumed["current_model_state"], straight["current_model_state"])
    assert_same_tensors(resumed["state_dict"], straight["state_dict"])


def test_an_exception_mid_validation_saves_raw_and_ema_weights_unswapped(tiny_config, tmp_path, one_torch_thread):
    failing = '{"class_path": "test_run_end_saves.FailInValidation"}'
    with pytest.raises(RuntimeError, match="a bug in validation"):
        run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "failed", "--trainer.callbacks+", failing)
    run_cli(
        "fit",
        "--config",
        tiny_config,
        "--trainer.default_root_dir",
        tmp_path / "reference",
        "--trainer.max_steps",
        "5",
        "--checkpointing.every_n_steps",
        "5",
        *NO_VALIDATION,
    )
    failed = load(tmp_path / "failed/tiny/version_0/checkpoints/last.ckpt")
    reference = load(tmp_path / "reference/tiny/version_0/checkpoints/periodic-step0000005.ckpt")
    assert failed["global_step"] == reference["global_step"] == 5
    assert_same_tensors(failed["state_dict"], reference["state_dict"])
    assert_same_tensors(failed["current_model_state"], reference["current_model_state"])


def test_ctrl_c_in_process_finishes_the_step_saves_and_gives_the_handler_back(tiny_config, tmp_path, one_torch_thread):
    handler = signal.getsignal(signal.SIGINT)
    ctrl_c = '{"class_path": "test_run_end_saves.CtrlCAtStep", "init_args": {"step": 3}}'
    with pytest.raises(SystemExit):  # Lightning's SIGTERMException: the graceful stop
        run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path, "--trainer.callbacks+", ctrl_c, *NO_VALIDATION)
    assert load(tmp_path / "tiny/version_0/checkpoints/last.ckpt")["global_step"] == 3
    assert signal.getsignal(signal.SIGINT) is handler


def test_slurm_requeue_calls_scontrol_with_the_job_id(tmp_path, monkeypatch):
    called = tmp_path / "called.txt"
    scontrol = tmp_path / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" > {called}\n')
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    requeue_slurm_job()
    assert called.read_text().strip() == "requeue 4242"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    requeue_slurm_job()
    assert called.read_text().strip() == "requeue 77_3"
