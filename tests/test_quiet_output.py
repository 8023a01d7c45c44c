"""Quiet output: a quickstart-like fit and a TorchScript evaluation print none of torch's and Lightning's known noise;
the run-end save says weights_only itself (the cause of Lightning's message, not a filter); --verbose shows the rest."""

from __future__ import annotations

import copy
import subprocess
import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from conftest import REPO, TINY_CONFIG, process_env, run_cli
from torch import nn
from torchvision.utils import save_image

from lightning_gen.console import quiet as quiet_module

NOISE = ("litlogger", "LeafSpec", "weights_only", "torch.jit.load is deprecated", "`torch.jit.load` is deprecated")


def tiny_quickstart(tmp_path: Path) -> Path:
    """configs/quickstart.yaml's kind of run (β-VAE on shapes, W&B offline), made tiny."""
    config = copy.deepcopy(TINY_CONFIG)
    del config["trainer"]["enable_progress_bar"]  # the bar (or its lines in a pipe), as in the quickstart
    config["tracking"] = {"logger": "wandb", "wandb_mode": "offline"}
    path = tmp_path / "quickstart.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lightning_gen", *map(str, args)], cwd=REPO, env={**process_env(), **(env or {})},
                          capture_output=True, text=True, timeout=600)  # fmt: skip


@pytest.mark.slow
def test_a_quickstart_fit_prints_none_of_the_known_noise(tmp_path):
    # max_steps 7 stops mid-epoch (5 batches an epoch), so the run-end save writes last.ckpt: the save that made Lightning
    # log "`weights_only` was not set, defaulting to `False`".
    result = run("fit", "--config", tiny_quickstart(tmp_path), "--trainer.default_root_dir", tmp_path / "runs", "--trainer.max_steps", 7,
                 env={"OMP_NUM_THREADS": "1"})  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert f"Saved {tmp_path / 'runs/quickstart/version_0/checkpoints/last.ckpt'} at step 7" in output  # the run-end save ran
    for noise in NOISE:
        assert noise not in output, f"{noise!r} in the output:\n{output}"
    # What the user needs is still there: the run directory, the metrics, where the files went.
    assert "Run directory: " in output and "Final validation" in output and "W&B offline run: " in output


def test_every_save_of_a_fit_says_weights_only(tiny_config, tmp_path, monkeypatch, one_torch_thread):
    """The cause, not a filter: Lightning logs its default only for save_checkpoint(weights_only=None)."""
    calls = []
    original = pl.Trainer.save_checkpoint

    def recording(self, filepath, weights_only=None, storage_options=None):
        calls.append(weights_only)
        return original(self, filepath, weights_only, storage_options)

    monkeypatch.setattr(pl.Trainer, "save_checkpoint", recording)
    # 7 steps: ModelCheckpoint saves at the validation of epoch 1, the run-end save at step 7 (mid-epoch).
    run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "runs", "--trainer.max_steps", 7,
            "--checkpointing.every_n_steps", 3)  # fmt: skip
    assert len(calls) >= 3 and None not in calls, calls
    assert (tmp_path / "runs/tiny/version_0/checkpoints/last.ckpt").is_file()


class TinyFeatures(nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(2, 3))


def test_a_torchscript_extractor_evaluates_without_the_jit_deprecation(tmp_path):
    extractor = tmp_path / "features.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(TinyFeatures()), extractor)
    generator = torch.Generator().manual_seed(0)
    for name in ("real", "generated"):
        (tmp_path / name).mkdir()
        for index in range(6):
            save_image(torch.rand(3, 8, 8, generator=generator), tmp_path / name / f"{index}.png")
    result = run("evaluate", "--images", tmp_path / "generated", "--reference", tmp_path / "real", "--feature_extractor", extractor,
                 "--metrics", "fid", "--cache_dir", tmp_path / "cache")  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "fid" in result.stdout and "torchscript:features.pt" in result.stdout
    assert "jit.load" not in output, output


@pytest.mark.slow
def test_verbose_shows_the_rest(tmp_path):
    result = run("fit", "--config", tiny_quickstart(tmp_path), "--trainer.default_root_dir", tmp_path / "runs", "--trainer.max_steps", 2,
                 "--verbose", env={"OMP_NUM_THREADS": "1"})  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "litlogger" in result.stdout + result.stderr and "LeafSpec" in result.stderr


def test_take_verbose_and_the_environment(monkeypatch):
    monkeypatch.delenv("LIGHTNING_GEN_VERBOSE", raising=False)
    assert quiet_module.take_verbose(["fit", "--verbose", "--config", "x.yaml"]) == (["fit", "--config", "x.yaml"], True)
    assert quiet_module.take_verbose(["fit"]) == (["fit"], False)
    monkeypatch.setenv("LIGHTNING_GEN_VERBOSE", "1")
    assert quiet_module.take_verbose(["fit"]) == (["fit"], True)


def test_the_filters_drop_exactly_the_known_lines(capsys):
    import logging

    quiet_module.quiet()
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    handler = logging.StreamHandler(sys.stdout)
    logger.addHandler(handler)
    try:
        logger.warning(
            "💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger](https://pypi.org/project/litlogger/)"
        )
        logger.warning("a message the user needs")
    finally:
        logger.removeHandler(handler)
    assert capsys.readouterr().out == "a message the user needs\n"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_module.quiet()  # after "always": the specific filters come first again
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use …", FutureWarning)
        warnings.warn("`torch.jit.load` is deprecated. Please switch to `torch.export`.", FutureWarning)
        warnings.warn("some other FutureWarning", FutureWarning)
    assert [str(warning.message) for warning in caught] == ["some other FutureWarning"]
