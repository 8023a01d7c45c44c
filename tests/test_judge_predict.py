"""The Judge is a classifier, not a generator: ``predict`` gives its probabilities per image, ``features`` its trunk,
and the commands that sample refuse it in one sentence (defect 3: predict ended in an AttributeError)."""

from __future__ import annotations

import copy
import functools

import lightning
import pytest
import torch
import yaml
from conftest import TINY_CONFIG, run_cli, save_checkpoint

from lightning_gen.data import ShapesDataModule
from lightning_gen.errors import UserError
from lightning_gen.models import Judge
from lightning_gen.protocol import has_features, is_generator, require_generator

DATA = {"num_images": 24, "image_size": 16, "batch_size": 8}
JUDGE = {"channels": [8, 16], "hidden": 8}


def test_a_judge_has_features_and_is_no_generator():
    judge = Judge(ShapesDataModule(image_size=16).facts, channels=(8, 16), hidden=8).eval()
    assert not is_generator(judge) and has_features(judge)
    images = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(judge.class_head(judge.features(images)), judge(images)["class"])
    with pytest.raises(UserError, match="^sample needs a generative model, but the checkpoint holds a Judge; pass a VAE"):
        require_generator(judge, "sample")


def test_predict_gives_each_images_class_and_attribute_probabilities(tmp_path, monkeypatch):
    torch.manual_seed(0)
    judge = Judge(ShapesDataModule(image_size=16).facts, **JUDGE)
    ckpt = save_checkpoint(judge, tmp_path / "judge.ckpt", **{"pytorch-lightning_version": lightning.__version__})
    config = copy.deepcopy(TINY_CONFIG)
    config["model"] = {"class_path": "lightning_gen.models.Judge", "init_args": JUDGE}
    config["data"] = {"class_path": "lightning_gen.data.ShapesDataModule", "init_args": DATA}
    path = tmp_path / "judge.yaml"
    path.write_text(yaml.safe_dump(config))
    predictions = []
    predict = lightning.pytorch.Trainer.predict

    @functools.wraps(predict)  # LightningCLI builds the predict options from this signature
    def keep(self, *args, **kwargs):
        predictions.extend(predict(self, *args, **kwargs) or [])

    monkeypatch.setattr(lightning.pytorch.Trainer, "predict", keep)
    run_cli("predict", "--config", path, "--ckpt_path", ckpt, "--trainer.default_root_dir", tmp_path / "runs")

    data = ShapesDataModule(**DATA)
    data.setup("predict")
    batches = list(data.predict_dataloader())
    assert len(predictions) == len(batches) > 0
    judge.eval()
    for prediction, batch in zip(predictions, batches):
        with torch.no_grad():
            logits = judge(batch["image"])
        assert torch.equal(prediction["index"], batch["index"])
        torch.testing.assert_close(prediction["class_probabilities"], logits["class"].softmax(1))
        assert torch.equal(prediction["class"], logits["class"].argmax(1))
        torch.testing.assert_close(prediction["attribute_probabilities"], torch.sigmoid(logits["attributes"]))
