"""A resume never destroys a run's records: metrics are appended (CSV, TensorBoard, W&B offline), every
session's config is kept, and a resume the checkpoint cannot continue is refused before anything is written."""

import csv
import re
from pathlib import Path

import pytest
import torch
import yaml
from conftest import run_cli

from lightning_gen.tracking.loggers import AppendingMetricsWriter

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def fit(config, root, *args):
    run_cli("fit", "--config", config, "--trainer.default_root_dir", root, *args)


def run_in_process(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        run_cli(*args)
    captured = capsys.readouterr()
    return exit_.value.code, captured.out, captured.err


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(path.relative_to(directory)): path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}


# -- metrics ----------------------------------------------------------------------------------------
def test_a_resumed_runs_metrics_csv_holds_every_epoch_like_an_uninterrupted_run(tiny_config, tmp_path):
    fit(tiny_config, tmp_path / "straight", "--trainer.max_epochs", "3")
    fit(tiny_config, tmp_path / "split", "--trainer.max_epochs", "2")
    run = tmp_path / "split/tiny/version_0"
    first_config = (run / "config.yaml").read_bytes()
    fit(tiny_config, tmp_path / "split", "--trainer.max_epochs", "3", "--ckpt_path", "last")

    straight, resumed = rows(tmp_path / "straight/tiny/version_0/metrics.csv"), rows(run / "metrics.csv")
    assert len(resumed) == len(straight)  # Lightning's CSV logger kept the last session's rows only
    assert [(r["epoch"], r["step"]) for r in resumed] == [(r["epoch"], r["step"]) for r in straight]
    assert {r["epoch"] for r in resumed} == {"0", "1", "2"}
    # Every session's resolved config: the first run's as config.resume-1.yaml, the resume's as config.yaml.
    assert (run / "config.resume-1.yaml").read_bytes() == first_config
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["max_epochs"] == 3
    assert yaml.safe_load((run / "config.resume-1.yaml").read_text())["trainer"]["max_epochs"] == 2


def test_the_csv_writer_appends_widens_its_header_and_sets_aside_rows_a_resume_replaces(tmp_path):
    first = AppendingMetricsWriter(str(tmp_path))
    for step in range(6):
        first.log_metrics({"train/loss": float(step)}, step)
    first.save()  # a session killed at step 6 after a checkpoint at step 4

    resumed = AppendingMetricsWriter(str(tmp_path), resume_step=4)
    for step in range(4, 8):
        resumed.log_metrics({"train/loss": 10.0 + step, "val/psnr": 20.0}, step)
    resumed.save()

    header = next(csv.reader(open(tmp_path / "metrics.csv")))
    assert header == ["step", "train/loss", "val/psnr"]  # the new column is added to every earlier row
    kept = rows(tmp_path / "metrics.csv")
    assert [int(r["step"]) for r in kept] == list(range(8))
    assert [float(r["train/loss"]) for r in kept[:4]] == [0.0, 1.0, 2.0, 3.0] and kept[0]["val/psnr"] == ""
    assert [float(r["train/loss"]) for r in kept[4:]] == [14.0, 15.0, 16.0, 17.0]
    replaced = rows(tmp_path / "metrics.replaced-from-step4.csv")  # what the killed session logged past its checkpoint
    assert [(int(r["step"]), float(r["train/loss"])) for r in replaced] == [(4, 4.0), (5, 5.0)]


def test_a_resume_keeps_the_earlier_tensorboard_event_files(tiny_config, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = ["--tracking.logger", "tensorboard"]
    fit(tiny_config, tmp_path, "--trainer.max_epochs", "2", *board)
    run = tmp_path / "tiny/version_0"
    (earlier,) = run.glob("events.out.tfevents.*")
    earlier_bytes = earlier.read_bytes()
    fit(tiny_config, tmp_path, "--trainer.max_epochs", "3", "--ckpt_path", "last", *board)
    events = sorted(run.glob("events.out.tfevents.*"))
    assert len(events) == 2 and earlier.read_bytes() == earlier_bytes
    steps = set()
    for path in events:
        accumulator = EventAccumulator(str(path))
        accumulator.Reload()
        steps |= {event.step for event in accumulator.Scalars("train/loss")}
    assert steps == set(range(15))  # epochs 0-1 from the first session, epoch 2 from the resume


@pytest.mark.slow
def test_a_resume_continues_the_same_wandb_offline_run(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    fit(tiny_config, tmp_path, "--trainer.max_epochs", "1", "--tracking.logger", "wandb")
    fit(tiny_config, tmp_path, "--trainer.max_epochs", "2", "--tracking.logger", "wandb", "--ckpt_path", "last")
    run = tmp_path / "tiny/version_0"
    run_id = torch.load(run / "checkpoints/last.ckpt", weights_only=True)["lightning_gen"]["run_id"]
    offline = sorted((run / "wandb").glob("offline-run-*"))
    # wandb names a folder offline-run-<time>-<run id>, adding -1, -2 … when a second one starts in the same second.
    assert len(offline) == 2 and all(re.fullmatch(rf"offline-run-\d{{8}}_\d{{6}}-{run_id}(-\d+)?", path.name) for path in offline)


# -- a resume the checkpoint cannot continue ------------------------------------------------------
@pytest.mark.parametrize(
    "override, phrases",
    [
        (["--model.init_args.latent_dim", "16"], ["latent_dim 8", "latent_dim 16"]),
        (["--data.init_args.image_size", "32"], ["image_size 16", "image_size 32"]),
    ],
)
def test_an_incompatible_resume_is_refused_before_it_touches_the_run(tiny_config, tmp_path, capsys, override, phrases):
    fit(tiny_config, tmp_path, "--trainer.max_epochs", "1")
    run = tmp_path / "tiny/version_0"
    before = snapshot(run)
    code, _, err = run_in_process(
        capsys,
        "fit",
        "--config",
        tiny_config,
        "--trainer.default_root_dir",
        tmp_path,
        "--trainer.max_epochs",
        "2",
        "--ckpt_path",
        "last",
        *override,
    )
    lines = err.strip().splitlines()
    assert code == 2 and lines[-1].startswith("error: ") and "Traceback" not in err and "state_dict" not in err
    assert "cannot continue with this config" in lines[-1] and all(phrase in lines[-1] for phrase in phrases)
    assert lines[-1].count(". ") == 0  # one sentence
    assert snapshot(run) == before  # config.yaml, hparams.yaml, metrics.csv, checkpoints: byte for byte, no new file
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == ["version_0"]


# -- which settings a resume trains with ------------------------------------------------------------
def test_a_resume_with_a_changed_lr_trains_with_it_says_so_and_records_it(tiny_config, tmp_path, lightning_log):
    fit(tiny_config, tmp_path, "--trainer.max_epochs", "1")
    fit(tiny_config, tmp_path, "--trainer.max_epochs", "2", "--ckpt_path", "last", "--model.init_args.optimizer.init_args.lr", "0.01")
    notices = [line for line in lightning_log if "instead of the checkpoint's" in line]
    assert len(notices) == 1 and "lr 0.01" in notices[0] and "lr 0.003" in notices[0] and "config wins" in notices[0]
    run = tmp_path / "tiny/version_0"
    checkpoint = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.01)  # what it trained with
    assert checkpoint["lightning_gen"]["optimizer_settings"][0][0]["lr"] == pytest.approx(0.01)
    recorded = yaml.safe_load((run / "config.yaml").read_text())["model"]["init_args"]["optimizer"]["init_args"]["lr"]
    assert recorded == pytest.approx(0.01)


def test_a_changed_lr_rescales_a_schedule_at_its_position():
    from types import SimpleNamespace

    from lightning_gen.callbacks.run_state import apply_config_settings, optimizer_settings

    weight = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.AdamW([weight], lr=1e-3, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    saved = optimizer_settings([optimizer])
    saved[0][0]["lr"] = 1e-3  # the configured rate the checkpoint recorded (the group holds the scheduled one)
    configured = [[{**saved[0][0], "lr": 4e-3, "weight_decay": 0.1}]]
    trainer = SimpleNamespace(optimizers=[optimizer], lr_scheduler_configs=[SimpleNamespace(scheduler=scheduler)])
    changes = apply_config_settings(trainer, configured, saved)
    assert {key for key, _, _ in changes} == {"lr", "weight_decay"}
    assert optimizer.param_groups[0]["lr"] == pytest.approx(4e-3 * 0.25)  # the schedule's position (step 2) is kept
    assert optimizer.param_groups[0]["weight_decay"] == 0.1
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(4e-3 * 0.125)


def test_a_runs_saved_config_resumes_its_own_experiment(tiny_config, tmp_path):
    fit(tiny_config, tmp_path, "--trainer.max_epochs", "1")
    saved = tmp_path / "tiny/version_0/config.yaml"
    assert yaml.safe_load(saved.read_text())["tracking"]["name"] == "tiny"
    copy = tmp_path / "config.yaml"  # also outside its run directory: the config names its experiment
    copy.write_bytes(saved.read_bytes())
    run_cli("fit", "--config", saved, "--trainer.max_epochs", "2", "--ckpt_path", "last")
    run_cli("fit", "--config", copy, "--trainer.max_epochs", "3", "--ckpt_path", "last")
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["tiny"]  # no experiment called 'config'
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == ["version_0"]
    assert torch.load(tmp_path / "tiny/version_0/checkpoints/last.ckpt", weights_only=True)["global_step"] == 15


# -- names and failed starts ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../escaped", "/tmp/escaped", "..", "a/b"])
def test_an_experiment_name_cannot_leave_the_runs_folder(tiny_config, tmp_path, capsys, name):
    root = tmp_path / "deep/er/runs"
    code, _, err = run_in_process(capsys, "fit", "--config", tiny_config, "--trainer.default_root_dir", root, "--tracking.name", name)
    assert code == 2 and err.strip().splitlines()[-1].startswith(f"error: --tracking.name '{name}'")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["tiny.yaml"]  # nothing written anywhere


def test_a_start_that_fails_before_training_leaves_no_run_directory(tiny_config, tmp_path, capsys):
    root = tmp_path / "runs"
    code, _, err = run_in_process(capsys, "fit", "--config", tiny_config, "--trainer.default_root_dir", root, "--trainer.max_epochs", "-5")
    assert code == 2 and "max_epochs" in err
    assert not root.exists()
    (root / "tiny/version_0").mkdir(parents=True)  # an earlier run's folder stays
    code, _, _ = run_in_process(capsys, "fit", "--config", tiny_config, "--trainer.default_root_dir", root, "--trainer.max_epochs", "-5")
    assert code == 2 and sorted(p.name for p in (root / "tiny").iterdir()) == ["version_0"]
    (root / "tiny/version_0").rmdir()
    fit(tiny_config, root, "--trainer.max_epochs", "1")
    assert sorted(p.name for p in (root / "tiny").iterdir()) == ["version_0"]  # the real run is version_0
