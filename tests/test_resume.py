"""Resuming: a run split by a stop equals an uninterrupted one; a killed process resumes with --ckpt_path last."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, TINY_CONFIG, SimulatedKill, process_env, run_cli, run_process


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_same_weights(a: dict, b: dict) -> None:
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_fit_two_plus_two_epochs_equals_four(tiny_config, tmp_path):
    run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "straight", "--trainer.max_epochs", "4")
    run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "split", "--trainer.max_epochs", "2")
    first = load(tmp_path / "split/tiny/version_0/checkpoints/last.ckpt")
    run_cli(
        "fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "split", "--trainer.max_epochs", "4", "--ckpt_path", "last"
    )
    assert sorted(p.name for p in (tmp_path / "split/tiny").iterdir()) == ["version_0"]  # same run directory
    straight = load(tmp_path / "straight/tiny/version_0/checkpoints/last.ckpt")
    resumed = load(tmp_path / "split/tiny/version_0/checkpoints/last.ckpt")
    assert straight["global_step"] == resumed["global_step"] == 4 * 5
    assert_same_weights(straight["state_dict"], resumed["state_dict"])  # EMA weights
    assert_same_weights(straight["current_model_state"], resumed["current_model_state"])  # raw weights
    assert straight["optimizer_states"][0]["state"][0]["exp_avg"].equal(resumed["optimizer_states"][0]["state"][0]["exp_avg"])
    assert resumed["lightning_gen"]["run_id"] == first["lightning_gen"]["run_id"]


def test_resume_from_a_mid_epoch_checkpoint_equals_an_uninterrupted_run(tiny_config, tmp_path):
    every = ["--checkpointing.every_n_steps", "3"]
    run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "straight", *every)
    # An exception before step 8 (5 steps per epoch): RunEndSave writes last.ckpt at step 7, inside epoch 2
    # (the periodic one is step 6); resuming from it must continue exactly where the run stopped.
    kill = '{"class_path": "conftest.KillAtStep", "init_args": {"step": 7}}'
    with pytest.raises(SimulatedKill):
        run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "split", "--trainer.callbacks+", kill, *every)
    interrupted = load(tmp_path / "split/tiny/version_0/checkpoints/last.ckpt")
    assert interrupted["global_step"] == 7
    run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "split", "--ckpt_path", "last", *every)
    straight = load(tmp_path / "straight/tiny/version_0/checkpoints/last.ckpt")
    resumed = load(tmp_path / "split/tiny/version_0/checkpoints/last.ckpt")
    assert straight["global_step"] == resumed["global_step"] == 10
    assert_same_weights(straight["state_dict"], resumed["state_dict"])
    assert_same_weights(straight["current_model_state"], resumed["current_model_state"])


def test_ckpt_path_last_without_a_run_is_a_clear_error(tiny_config, tmp_path):
    result = run_process("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "none", "--ckpt_path", "last")
    assert result.returncode == 2
    assert "found no checkpoint of experiment 'tiny'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_kill_minus_nine_then_resume_continues_the_same_wandb_run(tmp_path):
    config = {**TINY_CONFIG, "trainer": {**TINY_CONFIG["trainer"], "max_epochs": 40}}
    config["data"] = {**config["data"], "init_args": {**config["data"]["init_args"], "num_images": 400}}
    config["tracking"] = {"logger": "wandb", "wandb_mode": "offline"}
    config_path = tmp_path / "killme.yaml"
    config_path.write_text(yaml.safe_dump(config))
    root = tmp_path / "runs"
    args = ["fit", "--config", config_path, "--trainer.default_root_dir", root, "--checkpointing.every_n_steps", "5"]
    env = {**process_env(), "WANDB_MODE": "offline"}
    process = subprocess.Popen(
        [sys.executable, "-m", "lightning_gen", *map(str, args)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    last = root / "killme" / "version_0" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 180
    while time.time() < deadline and not (last.is_file() and load(last)["global_step"] >= 30):
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)  # like a Colab runtime that disappears
    process.wait()
    killed_at = load(last)
    assert killed_at["global_step"] >= 30

    result = run_process(*args[:-2], "--trainer.max_epochs", str(killed_at["epoch"] + 2), "--ckpt_path", "last")
    assert result.returncode == 0, result.stderr[-2000:]
    resumed = load(last)
    assert resumed["lightning_gen"]["run_id"] == killed_at["lightning_gen"]["run_id"]
    assert resumed["global_step"] > killed_at["global_step"]
    assert sorted(p.name for p in (root / "killme").iterdir()) == ["version_0"]
    offline_runs = sorted((root / "killme" / "version_0" / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 2 and all(p.name.endswith(killed_at["lightning_gen"]["run_id"]) for p in offline_runs)
