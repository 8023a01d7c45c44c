"""evaluate's FID/KID/PR/PSNR/SSIM modes: the offline-weights sentence, the real-feature cache, folder mode, VAE checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import run_cli, write_vae_run
from fixtures_features import CountingFeatures, TinyFeatures
from torchvision.io import read_image
from torchvision.utils import save_image

from lightning_gen.data import ShapesDataModule
from lightning_gen.metrics import extractors, formulas
from lightning_gen.metrics.extractors import build_extractor

DATA = {"class_path": "lightning_gen.data.ShapesDataModule", "init_args": {"num_images": 120, "image_size": 16, "val_fraction": 0.25}}


@pytest.fixture(scope="module")
def torchscript_extractor(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("extractor") / "tiny.pt"
    torch.jit.save(torch.jit.script(TinyFeatures()), path)
    return path


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory) -> Path:
    return write_vae_run(tmp_path_factory.mktemp("runs"), DATA)


def write_folder(images: torch.Tensor, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        save_image(image, folder / f"{index:03d}.png")
    return folder


def test_inception_without_weights_or_network_is_one_sentence_and_exit_2(tmp_path, monkeypatch, capsys, one_torch_thread):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    attempts = []

    def no_network(url, target):
        attempts.append(url)
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(extractors, "_download", no_network)
    images = write_folder(torch.rand(4, 3, 8, 8), tmp_path / "images")
    with pytest.raises(SystemExit) as exit_info:
        run_cli("evaluate", "--images", images, "--reference", images)
    error = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and attempts == [extractors.INCEPTION_URL]  # one try, no retry loop, then the sentence
    assert error.count("\n") == 0 and error.startswith("error: ")
    assert extractors.INCEPTION_FILE in error and extractors.INCEPTION_URL in error
    assert str(tmp_path / "hub" / "checkpoints" / extractors.INCEPTION_FILE) in error and "--inception_weights" in error


def test_folder_mode_scores_equal_the_formulas_on_the_extractor_features(tmp_path, torchscript_extractor, capsys, one_torch_thread):
    datamodule = ShapesDataModule(num_images=80, image_size=16, seed=1)
    datamodule.setup()
    real = torch.cat([batch["image"] for batch in datamodule.train_dataloader()])[:40]
    generated = (real.flip(-1) * 0.7).clamp(0, 1)
    real_dir, generated_dir = write_folder(real, tmp_path / "real"), write_folder(generated, tmp_path / "generated")
    out = tmp_path / "scores.json"
    common = ("--feature_extractor", torchscript_extractor, "--cache_dir", tmp_path / "cache", "--metrics", "fid,kid,pr")
    run_cli("evaluate", "--images", generated_dir, "--reference", real_dir, *common, "--out", out)
    scores = {row["metric"]: row for row in json.loads(out.read_text())["scores"]}
    extractor = torch.jit.load(str(torchscript_extractor))
    reloaded = [
        torch.stack([read_image(str(path)) for path in sorted(folder.glob("*.png"))]).float() / 255 for folder in (real_dir, generated_dir)
    ]
    with torch.no_grad():
        real_features, fake_features = (extractor(images).double() for images in reloaded)
    fid = scores["fid"]
    assert fid["value"] == pytest.approx(formulas.fid(real_features.float().double(), fake_features), rel=1e-4)
    assert fid["generated"] == fid["real"] == 40 and fid["extractor"] == "torchscript:tiny.pt"
    assert "biased" in fid["note"] and "biased upwards below 2048" in capsys.readouterr().out
    precision, recall = formulas.precision_recall(real_features, fake_features)
    assert scores["precision"]["value"] == pytest.approx(precision) and scores["recall"]["value"] == pytest.approx(recall)
    # A folder against itself.
    run_cli("evaluate", "--images", real_dir, "--reference", real_dir, *common, "--out", out)
    same = {row["metric"]: row["value"] for row in json.loads(out.read_text())["scores"]}
    assert abs(same["fid"]) < 1e-3 and same["precision"] == same["recall"] == 1.0 and fid["value"] > 1e-2


def test_vae_checkpoint_scores_and_the_real_feature_cache(vae_run, tmp_path, capsys, one_torch_thread):
    extractor = "fixtures_features.CountingFeatures"
    common = ("--ckpt_path", vae_run, "--feature_extractor", extractor, "--num", 24, "--batch_size", 10, "--cache_dir", tmp_path / "cache")
    CountingFeatures.images_seen = 0
    run_cli("evaluate", *common, "--out", tmp_path / "first.json", "--save_images", tmp_path / "samples")
    first = CountingFeatures.images_seen
    val_images = 30  # 25 % of 120
    assert first == val_images + 24 + val_images  # real split, samples, reconstructions
    assert "extracted and cached" in capsys.readouterr().out
    CountingFeatures.images_seen = 0
    run_cli("evaluate", *common, "--out", tmp_path / "second.json")
    assert CountingFeatures.images_seen == 24 + val_images  # the real split's features came from the cache
    assert "read from the cache" in capsys.readouterr().out
    first_scores, second_scores = (json.loads((tmp_path / name).read_text())["scores"] for name in ("first.json", "second.json"))
    assert [row["value"] for row in first_scores] == pytest.approx([row["value"] for row in second_scores], rel=1e-9)
    assert len(list((tmp_path / "samples").glob("*.png"))) == 24

    by_key = {f"{row['metric']}/{row['subject']}": row for row in first_scores}
    assert {
        "fid/samples",
        "kid/samples",
        "precision/samples",
        "fid/reconstructions",
        "psnr_mean/reconstructions",
        "ssim_p50/reconstructions",
    } <= set(by_key)
    assert by_key["fid/samples"]["seed"] == 0 and by_key["fid/samples"]["generated"] == 24 and by_key["fid/samples"]["real"] == val_images
    assert by_key["fid/samples"]["data"] == "ShapesDataModule val" and by_key["fid/samples"]["extractor"] == f"class:{extractor}"
    # PSNR per image by hand: 10 log10(1 / MSE) over the validation split.
    from lightning_gen.checkpoints.loading import load_model
    from lightning_gen.metrics.datamodules import datamodule_from_config

    model, datamodule = load_model(vae_run), datamodule_from_config(DATA, "test")
    datamodule.setup()
    originals = torch.cat([batch["image"] for batch in datamodule.val_dataloader()])
    with torch.no_grad():
        mse = (model.reconstruct(originals) - originals).square().mean(dim=(1, 2, 3))
    psnr = 10 * torch.log10(1 / mse)
    assert by_key["psnr_mean/reconstructions"]["value"] == pytest.approx(psnr.mean().item(), rel=1e-4)
    assert by_key["psnr_std/reconstructions"]["value"] == pytest.approx(psnr.std().item(), rel=1e-3)
    # The run directory got the numbers and the histograms.
    run = vae_run.parent.parent
    kept = json.loads((run / "evaluation" / "scores-seed0-val.json").read_text())["scores"]
    assert [row["value"] for row in kept] == pytest.approx([row["value"] for row in second_scores], rel=1e-9)
    for histogram in ("psnr_histogram.png", "ssim_histogram.png"):
        assert (tmp_path / histogram).read_bytes() == (run / "evaluation" / histogram).read_bytes()


def test_torch_export_and_class_path_extractors_give_the_networks_features(tmp_path):
    network, images = TinyFeatures(), torch.rand(5, 3, 16, 16)
    program = torch.export.export(network, (images[:2],), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, tmp_path / "tiny.pt2")
    for spec in (str(tmp_path / "tiny.pt2"), "fixtures_features.TinyFeatures"):
        extractor = build_extractor(spec)
        assert torch.allclose(extractor(images, batch_size=2), network(images).double(), atol=1e-6), spec
    assert build_extractor(str(tmp_path / "tiny.pt2")).name == "export:tiny.pt2"


def test_folder_mode_against_a_configs_split_and_bad_metric_names(vae_run, tmp_path, torchscript_extractor, capsys, one_torch_thread):
    config = tmp_path / "data.yaml"
    config.write_text(yaml.safe_dump({"data": DATA}))
    images = write_folder(torch.rand(12, 3, 16, 16), tmp_path / "noise")
    run_cli("evaluate", "--images", images, "--config", config, "--feature_extractor", torchscript_extractor,
            "--metrics", "fid,kid", "--cache_dir", tmp_path / "cache", "--out", tmp_path / "out.json")  # fmt: skip
    rows = json.loads((tmp_path / "out.json").read_text())["scores"]
    assert [row["metric"] for row in rows] == ["fid", "kid", "kid_std"] and rows[0]["real"] == 30 and rows[0]["generated"] == 12
    with pytest.raises(SystemExit) as exit_info:
        run_cli("evaluate", "--ckpt_path", vae_run, "--metrics", "fid,lpips")
    assert exit_info.value.code == 2 and "unknown lpips" in capsys.readouterr().err
