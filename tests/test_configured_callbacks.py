"""Issue 18 defects 1 and 8: what a config lists under trainer.logger / trainer.callbacks beside the CLI's own."""

from pathlib import Path

import lightning.pytorch as pl
import pytest
import yaml
from conftest import TINY_CONFIG, run_cli


def config_with(tmp_path: Path, trainer: dict, **top) -> Path:
    config = {**TINY_CONFIG, "trainer": {**TINY_CONFIG["trainer"], "max_epochs": 1, **trainer}, **top}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def refused(capsys, config: Path, tmp_path: Path, *extra: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        run_cli("fit", "--config", config, "--trainer.default_root_dir", tmp_path / "runs", *extra)
    assert exit_.value.code == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: ") and message.count("\n") == 0, message
    return message


def test_a_logger_under_trainer_logger_is_refused_not_replaced(tmp_path, capsys):
    logger = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path / "mine")}}
    message = refused(capsys, config_with(tmp_path, {"logger": logger}), tmp_path)
    assert "trainer.logger" in message and "tracking.logger" in message and "CSVLogger" in message
    assert not (tmp_path / "mine").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("class_path", "setting"),
    [
        ("lightning.pytorch.callbacks.ModelCheckpoint", "checkpointing."),
        ("lightning.pytorch.callbacks.OnExceptionCheckpoint", "last.ckpt"),
        ("lightning.pytorch.callbacks.EMAWeightAveraging", "ema."),
        ("lightning_gen.callbacks.ema.EMA", "ema."),
    ],
)
def test_a_callback_the_cli_adds_itself_is_refused(tmp_path, capsys, class_path, setting):
    init_args = {"dirpath": str(tmp_path / "mine")} if "Checkpoint" in class_path else {}
    callbacks = [{"class_path": class_path, "init_args": init_args}]
    message = refused(capsys, config_with(tmp_path, {"callbacks": callbacks}), tmp_path)
    assert class_path.rpartition(".")[2] in message and setting in message, message
    assert not (tmp_path / "runs").exists()


ORDER: list[type] = []


class RecordOrder(pl.Callback):
    """Listed by class path: records the trainer's callback order when the fit starts."""

    def on_fit_start(self, trainer, pl_module):
        ORDER[:] = [type(callback) for callback in trainer.callbacks]


def test_the_users_weight_averaging_takes_the_place_of_ours_when_ema_is_off(tmp_path):
    from lightning.pytorch.callbacks import EMAWeightAveraging

    from lightning_gen.callbacks.ema import EMA
    from lightning_gen.checkpoints.run_end import RunEndSave
    from lightning_gen.checkpoints.snapshot_callback import WeightSnapshots

    callbacks = [
        {"class_path": "lightning.pytorch.callbacks.EMAWeightAveraging", "init_args": {"decay": 0.5}},
        {"class_path": "test_configured_callbacks.RecordOrder"},
    ]
    config = config_with(tmp_path, {"callbacks": callbacks})
    run_cli("fit", "--config", config, "--trainer.default_root_dir", tmp_path / "runs", "--ema.enabled", "false")
    assert EMA not in ORDER and ORDER.count(EMAWeightAveraging) == 1
    # Our EMA's slot: after RunEndSave (whose on_train_end saves before the average is copied over the weights),
    # before the weight snapshots (a step's snapshot holds its updated average).
    assert ORDER.index(RunEndSave) < ORDER.index(EMAWeightAveraging) < ORDER.index(WeightSnapshots)
