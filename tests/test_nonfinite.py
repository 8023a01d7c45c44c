"""Non-finite losses never reach the weights: the step is skipped, counted and logged; too many in a row stop the run."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
from conftest import REPO, process_env, run_cli
from fixtures_precision import PoisonBatch  # noqa: F401 (the CLI runs below name it as test_nonfinite.PoisonBatch)

from lightning_gen.callbacks.nonfinite_guard import NonFiniteGuard


class PoisonRank(pl.Callback):
    """Bad data on one process only of a multi-process run."""

    def __init__(self, step: int, rank: int):
        self.step = step
        self.rank = rank

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step and trainer.global_rank == self.rank:
            batch["image"][0, 0, 0, 0] = float("nan")


class DropStep(pl.Callback):
    """The reference: the step's batch is seen (same forward, same random draws) but nothing is applied,
    exactly what Lightning does when training_step returns None — no gradient reaches the optimizer."""

    def __init__(self, step: int):
        self.step = step

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_step == self.step:
            for parameter in pl_module.parameters():
                parameter.grad = None


def last_checkpoint(root: Path) -> dict:
    return torch.load(root / "tiny/version_0/checkpoints/last.ckpt", map_location="cpu", weights_only=True)


def fit(root: Path, config: Path, *extra: str) -> dict:
    run_cli(
        "fit",
        "--config",
        config,
        "--trainer.default_root_dir",
        root,
        "--trainer.max_steps",
        "6",
        "--trainer.check_val_every_n_epoch",
        "1000",
        *extra,
    )
    return last_checkpoint(root)


def callback(name: str, step: int) -> str:
    return f'{{"class_path": "test_nonfinite.{name}", "init_args": {{"step": {step}}}}}'


def assert_same(a: dict, b: dict) -> None:
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


@pytest.mark.parametrize(
    "precision",
    [["--trainer.precision", "32-true"], ["--trainer.precision", "bf16-mixed", "--trainer.gradient_clip_val", "0.5"]],
    ids=["fp32", "bf16_clipped"],
)
def test_a_nan_step_is_skipped_exactly(tiny_config, tmp_path, one_torch_thread, precision):
    poisoned = fit(tmp_path / "poisoned", tiny_config, "--trainer.callbacks+", callback("PoisonBatch", 3), *precision)
    reference = fit(tmp_path / "reference", tiny_config, "--trainer.callbacks+", callback("DropStep", 3), *precision)
    plain = fit(tmp_path / "plain", tiny_config, *precision)
    assert poisoned["global_step"] == reference["global_step"] == 6
    assert_same(poisoned["current_model_state"], reference["current_model_state"])  # raw weights
    assert_same(poisoned["state_dict"], reference["state_dict"])  # EMA weights
    assert_same(poisoned["optimizer_states"][0]["state"][0], reference["optimizer_states"][0]["state"][0])  # Adam moments and step
    # ... and skipping a step does change the run: the plain run differs.
    assert any(not torch.equal(poisoned["current_model_state"][k], plain["current_model_state"][k]) for k in plain["current_model_state"])
    metrics = list(csv.DictReader(open(next((tmp_path / "poisoned").rglob("metrics.csv")))))
    skipped = [float(row["train/skipped_nonfinite"]) for row in metrics if row.get("train/skipped_nonfinite")]
    assert skipped and skipped[-1] == 1.0


class SingleProcess:
    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        return decision


def guarded_step(loss: torch.Tensor, gradient: float, scaler: object | None) -> tuple[NonFiniteGuard, torch.nn.Module]:
    module = torch.nn.Linear(1, 1)
    for parameter in module.parameters():
        parameter.grad = torch.full_like(parameter, gradient)
    trainer = SimpleNamespace(strategy=SingleProcess(), precision_plugin=SimpleNamespace(scaler=scaler), global_step=0)
    guard = NonFiniteGuard(max_consecutive=3)
    guard.on_before_backward(trainer, module, loss)
    guard.on_before_optimizer_step(trainer, module, None)
    return guard, module


def test_under_16_mixed_inf_gradients_are_left_to_the_grad_scaler_but_a_nan_loss_is_skipped():
    # (16-mixed cannot run on a CPU — Lightning switches it to bf16-mixed — so the scaler's case is checked here.)
    guard, module = guarded_step(torch.tensor(1.0), float("inf"), scaler=object())
    assert guard.skipped == 0 and all(parameter.grad is not None for parameter in module.parameters())
    guard, module = guarded_step(torch.tensor(float("nan")), 1.0, scaler=object())
    assert guard.skipped == 1 and all(parameter.grad is None for parameter in module.parameters())
    guard, module = guarded_step(torch.tensor(1.0), float("inf"), scaler=None)  # without a scaler Inf gradients count
    assert guard.skipped == 1


def test_without_the_guard_the_nan_reaches_the_weights(tiny_config, tmp_path, one_torch_thread):
    poisoned = fit(tmp_path, tiny_config, "--trainer.callbacks+", callback("PoisonBatch", 3), "--guard.enabled", "false")
    assert not all(torch.isfinite(tensor).all() for tensor in poisoned["current_model_state"].values())


def test_an_exploding_run_stops_with_one_sentence_and_a_finite_checkpoint(tiny_config, tmp_path, one_torch_thread, capsys):
    with pytest.raises(SystemExit) as stopped:
        run_cli(
            "fit",
            "--config",
            tiny_config,
            "--trainer.default_root_dir",
            tmp_path,
            "--trainer.max_epochs",
            "20",
            "--model.init_args.optimizer.init_args.lr",
            "1e12",
            "--guard.max_consecutive_nonfinite",
            "3",
            "--trainer.check_val_every_n_epoch",
            "1000",
        )
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: training stopped at step ") and "NaN/Inf in 3 steps in a row" in error
    checkpoint = last_checkpoint(tmp_path)
    step = int(error.split("training stopped at step ")[1].split(":")[0])
    assert checkpoint["global_step"] == step - 1  # the stop saved last.ckpt (the stopping step is not counted) ...
    for weights in (checkpoint["state_dict"], checkpoint["current_model_state"]):  # ... and it is finite
        assert all(torch.isfinite(tensor).all() for tensor in weights.values() if tensor.is_floating_point())


def test_an_exploding_mixture_prior_run_ends_in_the_guards_sentence(tiny_config, tmp_path, one_torch_thread, capsys):
    """The quickstart's kind of model: the latent prior's mixture is extra state (a dict) in the state_dict, and a
    validation on diverged weights (here after 6 skipped steps, before the guard's 8th) must not refit it on NaN codes."""
    with (
        pytest.raises(SystemExit) as stopped,
        pytest.warns(UserWarning, match="the latent codes hold NaN/Inf, so the latent mixture is not refitted"),
    ):
        run_cli(
            "fit",
            "--config",
            tiny_config,
            "--trainer.default_root_dir",
            tmp_path,
            "--trainer.max_epochs",
            "20",
            "--model.init_args.prior",
            "gmm",
            "--model.init_args.gmm_components",
            "2",
            "--model.init_args.optimizer.init_args.lr",
            "1e12",
            "--guard.max_consecutive_nonfinite",
            "8",
        )
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: training stopped at step ") and "Traceback" not in err
    checkpoint = last_checkpoint(tmp_path)
    step = int(err.strip().splitlines()[-1].split("training stopped at step ")[1].split(":")[0])
    assert checkpoint["global_step"] == step - 1
    for weights in (checkpoint["state_dict"], checkpoint["current_model_state"]):
        assert all(
            torch.isfinite(tensor).all() for tensor in weights.values() if isinstance(tensor, torch.Tensor) and tensor.is_floating_point()
        )


def test_a_skipped_step_puts_batchnorm_statistics_back():
    """The forward pass of a NaN batch has already moved the running statistics; the skipped step undoes that too,
    so the model after it is exactly the one before (and RunEndSave can still save it: every tensor is finite)."""
    module = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    trainer = SimpleNamespace(strategy=SingleProcess(), precision_plugin=SimpleNamespace(scaler=None), global_step=0)
    guard = NonFiniteGuard(max_consecutive=3)
    guard.on_train_start(trainer, module)

    def step(batch: torch.Tensor) -> None:
        guard.on_train_batch_start(trainer, module, batch, 0)
        loss = module(batch).sum()
        guard.on_before_backward(trainer, module, loss)
        loss.backward()
        guard.on_before_optimizer_step(trainer, module, None)
        module.zero_grad(set_to_none=True)

    step(torch.randn(4, 2))
    before = {name: tensor.clone() for name, tensor in module.state_dict().items()}
    step(torch.full((4, 2), float("nan")))
    assert guard.skipped == 1
    for name, tensor in module.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    step(torch.randn(4, 2))  # a good step moves them again
    assert guard.consecutive == 0 and not torch.equal(module[1].running_mean, before["1.running_mean"])


def test_every_rank_skips_when_another_rank_saw_a_nan():
    """Under DDP the decision is reduced with "any": a rank whose own values are finite skips too, so replicas stay equal."""

    class OtherRankSawNaN:
        def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
            self.asked = (decision, all)
            return True

    module = torch.nn.Linear(2, 1)
    loss = module(torch.ones(1, 2)).sum()
    loss.backward()
    trainer = SimpleNamespace(strategy=OtherRankSawNaN(), precision_plugin=SimpleNamespace(), global_step=0)
    guard = NonFiniteGuard(max_consecutive=3)
    guard.on_before_backward(trainer, module, loss)
    guard.on_before_optimizer_step(trainer, module, None)
    assert trainer.strategy.asked == (False, False)  # this rank: finite; reduced with any()
    assert all(parameter.grad is None for parameter in module.parameters())
    assert guard.skipped == guard.consecutive == 1


@pytest.mark.slow
def test_two_processes_skip_together_when_one_rank_sees_a_nan(tiny_config, tmp_path):
    poison = '{"class_path": "test_nonfinite.PoisonRank", "init_args": {"step": 2, "rank": 1}}'
    env = {**process_env(), "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lightning_gen",
            "fit",
            "--config",
            str(tiny_config),
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.devices",
            "2",
            "--trainer.strategy",
            "ddp",
            "--trainer.accelerator",
            "cpu",
            "--trainer.max_steps",
            "4",
            "--trainer.check_val_every_n_epoch",
            "1000",
            "--trainer.callbacks+",
            poison,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "step 3: NaN/Inf loss or gradients, step skipped" in result.stderr
    checkpoint = last_checkpoint(tmp_path)
    assert checkpoint["global_step"] == 4
    for weights in (checkpoint["state_dict"], checkpoint["current_model_state"]):  # EMA and raw
        assert all(torch.isfinite(tensor).all() for tensor in weights.values() if tensor.is_floating_point())
    # Adam stepped 3 times in 4 steps on rank 0, whose own loss was finite (the all-reduced gradients and decision were not).
    assert checkpoint["optimizer_states"][0]["state"][0]["step"] == 3
