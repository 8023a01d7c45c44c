"""CLI fit on the built-in shapes, end to end: run directory, checkpoints, grids, metrics, loggers, precision."""

import csv
from pathlib import Path

import torch
import yaml
from conftest import run_cli


def only_run(root: Path, experiment: str = "tiny") -> Path:
    versions = sorted((root / experiment).glob("version_*"))
    assert len(versions) == 1, versions
    return versions[0]


def test_fit_writes_a_complete_run_directory(tiny_config, tmp_path):
    run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "runs")
    run = only_run(tmp_path / "runs")
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["init_args"]["latent_dim"] == 8
    checkpoints = {p.name for p in (run / "checkpoints").iterdir()}
    assert "last.ckpt" in checkpoints and any(name.startswith("best-") for name in checkpoints)
    for grid in ("reconstructions", "samples", "interpolations"):
        assert len(list((run / "images" / grid).glob("*.png"))) == 2, grid  # one per validation epoch
    metrics = list(csv.DictReader((run / "metrics.csv").open()))
    logged = {key for row in metrics for key, value in row.items() if value}
    assert {"val/loss", "val/recon", "val/kl", "val/psnr", "val/ssim", "train/loss"} <= logged


def test_checkpoint_holds_ema_and_raw_weights_and_the_vocabulary(tiny_config, tmp_path):
    run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "runs")
    checkpoint = torch.load(only_run(tmp_path / "runs") / "checkpoints" / "last.ckpt", weights_only=False)
    assert "current_model_state" in checkpoint  # raw weights beside the EMA ones in state_dict
    differs = any(not torch.equal(checkpoint["state_dict"][k], checkpoint["current_model_state"][k]) for k in checkpoint["state_dict"])
    assert differs
    facts = checkpoint["lightning_gen"]["data_facts"]
    assert facts["image_size"] == 16 and "red circle" in facts["class_names"]
    assert checkpoint["lightning_gen"]["model_class"] == "lightning_gen.models.vae.VAE"


def test_ema_switched_off_leaves_no_averaged_state(tiny_config, tmp_path):
    run_cli(
        "fit",
        "--config",
        tiny_config,
        "--trainer.default_root_dir",
        tmp_path / "runs",
        "--ema.enabled",
        "false",
        "--trainer.max_epochs",
        "1",
    )
    checkpoint = torch.load(only_run(tmp_path / "runs") / "checkpoints" / "last.ckpt", weights_only=False)
    assert "current_model_state" not in checkpoint


def test_periodic_checkpoints_keep_the_newest(tiny_config, tmp_path):
    run_cli(
        "fit",
        "--config",
        tiny_config,
        "--trainer.default_root_dir",
        tmp_path / "runs",
        "--checkpointing.every_n_steps",
        "2",
        "--checkpointing.keep_periodic",
        "3",
    )
    periodic = sorted(p.name for p in (only_run(tmp_path / "runs") / "checkpoints").glob("periodic-*"))
    assert periodic == ["periodic-step0000006.ckpt", "periodic-step0000008.ckpt", "periodic-step0000010.ckpt"]


def test_each_new_fit_gets_a_new_version(tiny_config, tmp_path):
    for _ in range(2):
        run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "runs", "--trainer.max_epochs", "1")
    assert sorted(p.name for p in (tmp_path / "runs" / "tiny").iterdir()) == ["version_0", "version_1"]


def test_experiment_name_overrides_the_config_stem(tiny_config, tmp_path):
    run_cli(
        "fit",
        "--config",
        tiny_config,
        "--trainer.default_root_dir",
        tmp_path / "runs",
        "--trainer.max_epochs",
        "1",
        "--tracking.name",
        "sweep_a",
    )
    run = only_run(tmp_path / "runs", "sweep_a")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["sweep_a"]  # nothing under the config's stem
    assert yaml.safe_load((run / "config.yaml").read_text())["tracking"]["name"] == "sweep_a"
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 5  # 86 train images of 96, 5 full batches of 16 in the one epoch


def test_wandb_offline_run_lives_in_the_run_directory_with_the_config(tiny_config, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: no credentials, so offline
    run_cli(
        "fit",
        "--config",
        tiny_config,
        "--trainer.default_root_dir",
        tmp_path / "runs",
        "--trainer.max_epochs",
        "1",
        "--tracking.logger",
        "wandb",
    )
    run = only_run(tmp_path / "runs")
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert offline[0].name.endswith(checkpoint["lightning_gen"]["run_id"])
    # wandb keeps an offline run's config and history in its transaction log until `wandb sync`.
    log = next(offline[0].glob("run-*.wandb")).read_bytes()
    for config_key in (b"latent_dim", b"interpolation_steps", b"wandb_mode"):  # model, images and tracking groups
        assert config_key in log
    media = {p.name.split("_")[0] for p in (offline[0] / "files" / "media" / "images").rglob("*.png")}
    assert media == {"reconstructions", "samples", "interpolations"}


def test_tensorboard_is_an_alternative_logger(tiny_config, tmp_path):
    run_cli(
        "fit",
        "--config",
        tiny_config,
        "--trainer.default_root_dir",
        tmp_path / "runs",
        "--trainer.max_epochs",
        "1",
        "--tracking.logger",
        "tensorboard",
    )
    assert list(only_run(tmp_path / "runs").glob("events.out.tfevents.*"))


def test_bf16_mixed_precision_trains_on_cpu(tiny_config, tmp_path):
    run_cli(
        "fit",
        "--config",
        tiny_config,
        "--trainer.default_root_dir",
        tmp_path / "runs",
        "--trainer.max_epochs",
        "1",
        "--trainer.precision",
        "bf16-mixed",
    )
    metrics = list(csv.DictReader((only_run(tmp_path / "runs") / "metrics.csv").open()))
    losses = [float(row["val/loss"]) for row in metrics if row.get("val/loss")]
    assert losses and all(torch.isfinite(torch.tensor(losses)))


def test_validate_and_test_run_from_a_checkpoint(tiny_config, tmp_path):
    run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "runs", "--trainer.max_epochs", "1")
    checkpoint = only_run(tmp_path / "runs") / "checkpoints" / "last.ckpt"
    run_cli("test", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "eval", "--ckpt_path", checkpoint)
    metrics = list(csv.DictReader((only_run(tmp_path / "eval") / "metrics.csv").open()))
    assert any(row.get("test/psnr") for row in metrics)
