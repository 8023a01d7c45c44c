"""The SampleQuality callback: val/fid and val/kid of EMA samples, equal to scoring the saved EMA weights afterwards."""

from __future__ import annotations

import copy
import csv

import pytest
import torch
import yaml
from conftest import TINY_CONFIG, run_cli

from lightning_gen.checkpoints.loading import load_model
from lightning_gen.metrics import formulas
from lightning_gen.metrics.datamodules import datamodule_from_config
from lightning_gen.metrics.evaluation import real_features, sample_batched
from lightning_gen.metrics.extractors import build_extractor
from lightning_gen.metrics.feature_cache import FeatureCache

EXTRACTOR = "fixtures_features.TinyFeatures"


def test_sample_quality_logs_the_fid_of_the_saved_ema_weights(tmp_path, one_torch_thread):
    config = copy.deepcopy(TINY_CONFIG)
    config["trainer"]["max_epochs"] = 2
    config["trainer"]["callbacks"] = [
        {
            "class_path": "lightning_gen.callbacks.sample_quality.SampleQuality",
            "init_args": {
                "every_n_epochs": 1,
                "num_samples": 40,
                "feature_extractor": EXTRACTOR,
                "seed": 3,
                "batch_size": 16,
                "cache_dir": str(tmp_path / "cache"),
            },
        }
    ]
    (tmp_path / "quality.yaml").write_text(yaml.safe_dump(config))
    run_cli("fit", "--config", tmp_path / "quality.yaml", "--trainer.default_root_dir", tmp_path / "runs")
    run = tmp_path / "runs" / "quality" / "version_0"
    with open(run / "metrics.csv") as handle:
        logged = [row for row in csv.DictReader(handle) if row.get("val/fid")]
    assert len(logged) == 2  # every validation epoch, not the sanity check
    # The last checkpoint holds the EMA weights the callback sampled from at the last epoch.
    model = load_model(run / "checkpoints" / "last.ckpt")
    extractor = build_extractor(EXTRACTOR)
    datamodule = datamodule_from_config(config["data"], "test")
    datamodule.setup()
    real, cached = real_features(datamodule, "val", extractor, FeatureCache(tmp_path / "cache"), 16)
    assert cached  # the callback computed them once and left them in the cache
    fake = extractor(torch.cat(list(sample_batched(model, 40, 3, 16))))
    assert float(logged[-1]["val/fid"]) == pytest.approx(formulas.fid(real, fake), rel=1e-4)
    assert float(logged[-1]["val/kid"]) == pytest.approx(formulas.kid(real, fake, seed=3)[0], rel=1e-3, abs=1e-6)
    assert float(logged[0]["val/fid"]) != float(logged[-1]["val/fid"])


@pytest.mark.slow
def test_sample_quality_under_two_process_ddp_gathers_every_rank_share(tmp_path):
    from conftest import run_process
    from fixtures_features import TinyFeatures

    extractor_file = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(TinyFeatures()), extractor_file)
    config = copy.deepcopy(TINY_CONFIG)
    config["trainer"].update(devices=2, strategy="ddp", max_epochs=1)
    config["trainer"]["callbacks"] = [
        {
            "class_path": "lightning_gen.callbacks.sample_quality.SampleQuality",
            "init_args": {
                "num_samples": 41,
                "feature_extractor": str(extractor_file),
                "seed": 3,
                "batch_size": 16,
                "cache_dir": str(tmp_path / "cache"),
            },
        }
    ]
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(config))
    result = run_process("fit", "--config", tmp_path / "ddp.yaml", "--trainer.default_root_dir", tmp_path / "runs", timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "ddp" / "version_0"
    with open(run / "metrics.csv") as handle:
        logged = [row for row in csv.DictReader(handle) if row.get("val/fid")]
    assert len(logged) == 1
    # Rank 0 sampled 21 images from seed 3, rank 1 20 images from seed 3 + 1,000,003: all 41 were scored.
    model = load_model(run / "checkpoints" / "last.ckpt")
    extractor = build_extractor(str(extractor_file))
    datamodule = datamodule_from_config(config["data"], "test")
    datamodule.setup()
    real, _ = real_features(datamodule, "val", extractor, FeatureCache(tmp_path / "cache"), 16)
    shares = [torch.cat(list(sample_batched(model, count, seed, 16))) for count, seed in ((21, 3), (20, 3 + 1_000_003))]
    fake = extractor(torch.cat(shares))
    assert float(logged[0]["val/fid"]) == pytest.approx(formulas.fid(real, fake), rel=1e-4)
    only_rank_zero = extractor(torch.cat(list(sample_batched(model, 41, 3, 16))))
    assert float(logged[0]["val/fid"]) != pytest.approx(formulas.fid(real, only_rank_zero), rel=1e-4)
