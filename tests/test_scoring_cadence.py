"""Issue 18 defect 2: SampleQuality and JudgeScore score on their cadence in a step-limited run (max_epochs: -1)."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import pytest
import yaml
from conftest import TINY_CONFIG, run_cli, save_checkpoint

from lightning_gen.callbacks.cadence import Cadence
from lightning_gen.data import ShapesDataModule
from lightning_gen.errors import UserError
from lightning_gen.models import Judge

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def judge_ckpt(tmp_path_factory) -> Path:
    judge = Judge(ShapesDataModule(image_size=16).facts, channels=(8, 16), hidden=8)
    return save_checkpoint(judge, tmp_path_factory.mktemp("judge") / "judge.ckpt")


def scored_steps(run: Path, key: str) -> list[int]:
    """The optimizer steps taken at each validation that logged ``key`` (metrics.csv logs a validation after
    step N's update at step N - 1, the step of the batch it follows)."""
    with open(run / "metrics.csv") as handle:
        return [int(row["step"]) + 1 for row in csv.DictReader(handle) if row.get(key)]


def step_limited_fit(tmp_path: Path, judge_ckpt: Path, quality: dict, judge: dict) -> Path:
    config = copy.deepcopy(TINY_CONFIG)
    # 48 shapes: 40 train images, 5 batches of 8 an epoch, validated at every epoch's end; 23 steps (the 5th epoch
    # stops after its 3rd batch, and lightning_gen validates at that last step too).
    config["trainer"].update(max_steps=23, max_epochs=-1)
    config["data"]["init_args"].update(num_images=48, batch_size=8)
    config["model"] = {
        "class_path": "lightning_gen.models.CVAE",
        "init_args": {"condition": "class", "channels": [8, 16], "latent_dim": 4},
    }
    config["images"]["validate_at_end"] = True
    config["trainer"]["callbacks"] = [
        {
            "class_path": "lightning_gen.callbacks.sample_quality.SampleQuality",
            "init_args": {
                "num_samples": 8,
                "batch_size": 8,
                "feature_extractor": "fixtures_features.TinyFeatures",
                "cache_dir": str(tmp_path / "cache"),
                **quality,
            },
        },  # fmt: skip
        {
            "class_path": "lightning_gen.callbacks.judge_score.JudgeScore",
            "init_args": {"judge_ckpt": str(judge_ckpt), "num_samples": 4, **judge},
        },
    ]
    path = tmp_path / "cadence.yaml"
    path.write_text(yaml.safe_dump(config))
    run_cli("fit", "--config", path, "--trainer.default_root_dir", tmp_path / "runs")
    return tmp_path / "runs" / "cadence" / "version_0"


def test_each_callback_scores_on_its_own_cadence_in_a_step_limited_run(tmp_path, judge_ckpt):
    run = step_limited_fit(tmp_path, judge_ckpt, {"every_n_steps": 10}, {"every_n_epochs": 2})
    assert scored_steps(run, "val/loss") == [5, 10, 15, 20, 23]  # every validation
    # Every 10 steps: the validations at steps 10 and 20, and the final one at max_steps.
    assert scored_steps(run, "val/fid") == [10, 20, 23]
    # Every 2nd epoch: epochs 2 and 4 (steps 10 and 20), and the final one.
    assert scored_steps(run, "val/judge_overall") == [10, 20, 23]


def test_every_n_epochs_is_honoured_without_max_epochs(tmp_path, judge_ckpt):
    run = step_limited_fit(tmp_path, judge_ckpt, {"every_n_epochs": 3}, {"every_n_steps": 7})
    assert scored_steps(run, "val/fid") == [15, 23]  # epoch 3 and the final validation, not every one
    assert scored_steps(run, "val/judge_overall") == [10, 15, 23]  # the first validations at or after steps 7, 14, 21


def test_both_cadences_at_once_are_refused():
    with pytest.raises(UserError, match="every_n_epochs or every_n_steps"):
        Cadence("SampleQuality", every_n_epochs=2, every_n_steps=100)
