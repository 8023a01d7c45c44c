"""`sample` from a checkpoint alone, and `predict` through the CLI."""

from pathlib import Path

import pytest
import torch
from conftest import run_cli, run_process
from PIL import Image

from lightning_gen.checkpoints.loading import load_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    import yaml
    from conftest import TINY_CONFIG

    root = tmp_path_factory.mktemp("sample")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_CONFIG))
    run_cli("fit", "--config", config, "--trainer.default_root_dir", root / "runs")
    return root / "runs/tiny/version_0/checkpoints/last.ckpt"


def test_sample_writes_a_grid_of_n_images(checkpoint, tmp_path):
    out = tmp_path / "grid.png"
    run_cli("sample", "--ckpt_path", checkpoint, "--num", "6", "--nrow", "3", "--out", out, "--seed", "1")
    # 16-pixel images, 1-pixel padding: 3 columns, 2 rows.
    assert Image.open(out).size == (3 * 17 + 1, 2 * 17 + 1)


def test_same_seed_same_grid_other_seed_other_grid(checkpoint, tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        run_cli("sample", "--ckpt_path", checkpoint, "--num", "4", "--out", tmp_path / f"{name}.png", "--seed", str(seed))
    a, b, c = ((tmp_path / f"{n}.png").read_bytes() for n in "abc")
    assert a == b and a != c


def test_sampling_uses_the_ema_weights(checkpoint):
    saved = torch.load(checkpoint, weights_only=False)
    model = load_model(checkpoint)
    for name, value in model.state_dict().items():
        assert torch.equal(value, saved["state_dict"][name])  # the averaged weights, not current_model_state
    assert any(not torch.equal(saved["state_dict"][k], saved["current_model_state"][k]) for k in saved["state_dict"])


def test_unconditional_model_rejects_a_condition(checkpoint, tmp_path):
    result = run_process("sample", "--ckpt_path", checkpoint, "--condition", "red", "--out", tmp_path / "x.png")
    assert result.returncode == 2 and "does not take --condition" in result.stderr


def test_predict_returns_reconstructions(checkpoint, tmp_path):
    import yaml
    from conftest import TINY_CONFIG

    from lightning_gen.cli import GenerativeCLI

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_CONFIG))
    cli = GenerativeCLI(args=["--config", str(config), "--trainer.default_root_dir", str(tmp_path / "runs")], run=False)
    predictions = cli.trainer.predict(cli.model, cli.datamodule, ckpt_path=str(checkpoint))
    first = predictions[0]
    assert first["image"].shape[1:] == (3, 16, 16) and first["image"].min() >= 0 and first["image"].max() <= 1
