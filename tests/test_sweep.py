"""sweep: the grid, run names, skipping finished runs, resuming an interrupted one, the W&B sweep YAML."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_CONFIG, SimulatedKill, run_cli

from lightning_gen.commands import sweep


class FakeFit:
    """Records each fit's arguments and leaves what fit leaves on disk: <root>/<experiment>/version_0/checkpoints/last.ckpt."""

    def __init__(self, root: Path, fail_on: str | None = None):
        self.root, self.fail_on, self.calls = root, fail_on, []

    def __call__(self, argv: list[str]) -> None:
        self.calls.append(argv)
        experiment = argv[argv.index("--tracking.name") + 1]
        checkpoints = self.root / experiment / "version_0" / "checkpoints"
        checkpoints.mkdir(parents=True, exist_ok=True)
        (checkpoints / "last.ckpt").write_bytes(b"weights")
        if self.fail_on and self.fail_on in experiment:
            raise SimulatedKill(experiment)


def test_sweep_runs_the_grid_skips_finished_runs_and_resumes_an_interrupted_one(tmp_path, capsys):
    root = tmp_path / "runs"
    config = tmp_path / "base.yaml"
    config.write_text(yaml.safe_dump({"tracking": {"group": "betas"}, "trainer": {"default_root_dir": str(root)}}))
    fit_args = ["--config", str(config), "--trainer.max_epochs", "3"]
    sets = ["model.init_args.kl_weight=1,0.5", "model.init_args.latent_dim=4,8"]

    fit = FakeFit(root, fail_on="kl_weight=0.5,latent_dim=4")
    with pytest.raises(SimulatedKill):
        sweep.run_sweep(sets, fit_args, fit=fit)
    assert [call[call.index("--tracking.name") + 1] for call in fit.calls] == [
        "betas-kl_weight=1,latent_dim=4", "betas-kl_weight=1,latent_dim=8", "betas-kl_weight=0.5,latent_dim=4"]  # fmt: skip
    first = fit.calls[0]
    assert first[:4] == fit_args and "--model.init_args.kl_weight=1" in first and "--model.init_args.latent_dim=4" in first
    assert first[first.index("--tracking.group") + 1] == "betas" and "--ckpt_path" not in first

    fit = FakeFit(root)
    outcomes = sweep.run_sweep(sets, fit_args, fit=fit)
    assert outcomes == [("betas-kl_weight=1,latent_dim=4", "skipped"), ("betas-kl_weight=1,latent_dim=8", "skipped"),
                        ("betas-kl_weight=0.5,latent_dim=4", "resumed"), ("betas-kl_weight=0.5,latent_dim=8", "ran")]  # fmt: skip
    assert fit.calls[0][-2:] == ["--ckpt_path", "last"] and "--ckpt_path" not in fit.calls[1]
    assert f"compare --group betas --root {root}" in capsys.readouterr().out
    assert [outcome for _, outcome in sweep.run_sweep(sets, fit_args, fit=FakeFit(root))] == ["skipped"] * 4


def test_wandb_sweep_yaml_calls_the_same_cli(tmp_path):
    path = tmp_path / "sweep.yaml"
    sweep.run_sweep(
        ["model.init_args.kl_weight=1,0.005"], ["--config", "configs/cats_beta0005.yaml"], dry_run=True, wandb_sweep_yaml=str(path)
    )
    written = yaml.safe_load(path.read_text())
    assert written["method"] == "grid" and written["name"] == "cats_beta_sweep"
    assert written["parameters"]["model.init_args.kl_weight"] == {"values": [1, 0.005]}
    assert written["command"] == [
        "${env}",
        "${interpreter}",
        "-m",
        "lightning_gen",
        "fit",
        "--config",
        "configs/cats_beta0005.yaml",
        "${args}",
    ]


def test_shipped_sweep_config_is_seed_003s_beta_grid():
    shipped = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "sweeps" / "cats_beta.yaml").read_text())
    assert shipped["parameters"]["model.init_args.kl_weight"]["values"] == [1, 2, 0.5, 0.05, 0.005]


def test_bad_set_is_one_sentence(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("sweep", "--set", "model.init_args.kl_weight", "--dry_run", "true")
    assert exit_info.value.code == 2 and "is not KEY=V1,V2" in capsys.readouterr().err


def test_sweep_reads_the_config_as_fit_merges_it(tmp_path):
    """Two config files and a dotted override, merged by jsonargparse as fit merges them: a nested key of the first
    file survives the second (a shallow YAML merge would drop model.init_args.latent_dim), the override wins."""
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text(yaml.safe_dump({
        "trainer": {"default_root_dir": str(tmp_path / "mine"), "max_epochs": 3}, "tracking": {"group": "betas"},
        "model": {"class_path": "lightning_gen.models.VAE", "init_args": {"kl_weight": 1.0, "latent_dim": 8, "channels": [4, 8]}},
    }))  # fmt: skip
    second.write_text(yaml.safe_dump({"model": {"init_args": {"latent_dim": 4}}, "trainer": {"max_epochs": 5}}))
    fit_args = ["--config", str(first), "--config", str(second), "--model.init_args.kl_weight=0.5"]
    config = sweep.fit_config(fit_args)
    assert config.model.class_path == "lightning_gen.models.VAE"
    assert (config.model.init_args.kl_weight, config.model.init_args.latent_dim, config.model.init_args.channels) == (0.5, 4, [4, 8])
    assert (config.trainer.max_epochs, config.trainer.default_root_dir) == (5, str(tmp_path / "mine"))
    assert sweep.sweep_name(fit_args, None) == "betas" and sweep.root_directory(fit_args) == tmp_path / "mine"
    later = ["--trainer.default_root_dir", str(tmp_path / "first"), "--config", str(first)]  # a later file overrides an earlier flag
    assert sweep.root_directory(later) == tmp_path / "mine"


@pytest.mark.slow
def test_real_sweep_is_resumed_after_a_kill_and_then_skipped(tmp_path, capsys, monkeypatch, one_torch_thread):
    root = tmp_path / "runs"
    config = copy.deepcopy(TINY_CONFIG)
    config["trainer"]["max_epochs"] = 2
    config["checkpointing"] = {"every_n_steps": 2}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "kill.yaml").write_text(
        yaml.safe_dump({"trainer": {"callbacks": [{"class_path": "conftest.KillAtStep", "init_args": {"step": 7}}]}})
    )
    common = ["--set", "model.init_args.kl_weight=0.1,1", "--trainer.default_root_dir", str(root), "--name", "tiny_sweep"]
    # Each run is its own fit process: conftest (the KillAtStep callback) must be importable there.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    with pytest.raises(SystemExit) as exit_info:  # the killed fit process: one sentence naming the run, then exit 2
        run_cli("sweep", "--config", tmp_path / "tiny.yaml", "--config", tmp_path / "kill.yaml", *common)
    assert exit_info.value.code == 2 and "tiny_sweep-kl_weight=0.1" in capsys.readouterr().err
    killed = root / "tiny_sweep-kl_weight=0.1" / "version_0"
    # The kill (an exception before step 7 trains) is saved as step 7's start by the run-end save.
    assert torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 7
    run_cli("sweep", "--config", tmp_path / "tiny.yaml", *common)
    assert "resuming" in capsys.readouterr().out
    assert torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 10  # the same run directory, finished
    assert not (root / "tiny_sweep-kl_weight=0.1" / "version_1").exists()
    assert (root / "tiny_sweep-kl_weight=1" / "version_0" / sweep.FINISHED_MARKER).is_file()
    saved = yaml.safe_load((root / "tiny_sweep-kl_weight=1" / "version_0" / "config.yaml").read_text())
    assert saved["model"]["init_args"]["kl_weight"] == 1 and saved["tracking"]["group"] == "tiny_sweep"
    run_cli("sweep", "--config", tmp_path / "tiny.yaml", *common)
    assert capsys.readouterr().out.count("finished before, skipped") == 2
