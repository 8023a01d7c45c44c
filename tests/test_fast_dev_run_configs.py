"""``fit --config configs/X.yaml --trainer.fast_dev_run 1`` works on every shipped config, quickly.

Each config keeps its schedule, callbacks, validation and grid settings as shipped (those are what a smoke run
must exercise); only what a test machine lacks is replaced: the datasets by small fixtures in their real layout
(written by the dataset tests' own writers), the hub T5 encoders by a tiny random one, the 1B-parameter Imagen
UNet by a small one with the same block types, and batch sizes by ones the fixtures fill.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO, process_env, run_cli
from fixtures_afhq import write_afhq
from fixtures_awa2 import write_awa2
from fixtures_cat_faces import write_cat_faces
from fixtures_celeba import write_celeba
from fixtures_image_folder import COLOURS, class_folders
from fixtures_latent import write_tiny_autoencoder
from fixtures_nabirds import write_nabirds
from fixtures_pretrained import save_tiny_pipeline
from PIL import Image

from lightning_gen.callbacks.image_grids import SMOKE_IMAGES
from lightning_gen.text.tiny_t5 import build_tiny_t5, shapes_captions

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
WRITERS = {  # data class → (fixture writer, the folder data.root points at, relative to the fixture folder)
    "CatFacesDataModule": (lambda root: write_cat_faces(root), "cats"),
    "CelebADataModule": (write_celeba, "."),
    "AwA2DataModule": (write_awa2, "."),
    "NABirdsDataModule": (write_nabirds, "."),
    "AnimalFacesDataModule": (write_afhq, "."),
    "ImageFolderDataModule": (lambda root: class_folders(root, per_class=4), "."),
}
SMALL_CHANNELS = 32  # UNets wider than the shapes ones (64×64 presets, seed 002's 1.02B Imagen base) at a test's size


def caption_vocabulary(config: dict) -> list[str]:
    data = config["data"]["init_args"]
    template = data.get("caption_template", "a photo of a {name}")
    if config["data"]["class_path"].endswith("ShapesDataModule"):
        return shapes_captions()
    names = data.get("classes") or list(COLOURS)
    return [template.format(name=name) for name in names]


def overrides(config: dict, fixtures: Path, tmp_path: Path) -> list[str]:
    data_class = config["data"]["class_path"].rsplit(".", 1)[-1]
    options = ["--data.init_args.batch_size", "4"]
    if data_class == "ShapesDataModule":
        options += ["--data.init_args.num_images", "48"]
    else:
        writer, inside = WRITERS[data_class]
        root = fixtures / data_class
        if not root.exists():
            writer(root)
        options += ["--data.init_args.root", str((root / inside).resolve())]
    model = config["model"]["init_args"]
    if config["model"]["class_path"].endswith("LatentDiffusion"):  # a tiny autoencoder at the config's image size
        size = config["data"]["init_args"].get("image_size", 64)
        options += ["--model.init_args.autoencoder", str(write_tiny_autoencoder(fixtures / f"autoencoder{size}.ckpt", image_size=size))]
    if model.get("conditioning") == "text":
        encoder = tmp_path / "tiny_t5"
        build_tiny_t5(encoder, caption_vocabulary(config), d_model=16)
        options += ["--model.init_args.text_encoder", str(encoder), "--model.init_args.text_cache_dir", str(tmp_path / "text_cache")]
    if model.get("pretrained"):  # a Hub checkpoint cannot be downloaded here: a tiny pipeline saved at the data's size stands in
        folder = tmp_path / "pretrained"
        save_tiny_pipeline(folder, image_size=config["data"]["init_args"].get("image_size", 64))
        options += ["--model.init_args.pretrained", str(folder)]
    unet = dict(model.get("unet") or {})
    if max(unet.get("block_out_channels", [0])) > 64:  # the same levels, block types and attention, narrower and shallower
        unet.update(block_out_channels=[SMALL_CHANNELS] * len(unet["block_out_channels"]), layers_per_block=1, attention_head_dim=8)
        options += ["--model.init_args.unet", json.dumps(unet)]
    return options


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture(autouse=True)
def image_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LIGHTNING_GEN_CACHE", str(tmp_path / "image_cache"))


def smoke_options(config_path: Path, fixtures: Path, tmp_path: Path) -> list[str]:
    config = yaml.safe_load(config_path.read_text())
    return [
        "fit", "--config", str(config_path), "--trainer.fast_dev_run", "1", "--trainer.accelerator", "cpu",
        "--trainer.default_root_dir", str(tmp_path / "runs"), "--tracking.logger", "csv",
        *overrides(config, fixtures, tmp_path),
    ]  # fmt: skip


@pytest.mark.parametrize("config_path", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_fast_dev_run_trains_one_step_and_validates_with_tiny_grids(config_path, fixtures, tmp_path, one_torch_thread):
    run_cli(*smoke_options(config_path, fixtures, tmp_path))  # a UserError would exit 2
    runs = list((tmp_path / "runs" / config_path.stem).iterdir())
    assert len(runs) == 1
    model = yaml.safe_load(config_path.read_text())["model"]["class_path"]
    samples = sorted((runs[0] / "images/samples").glob("*.png"))
    if model.endswith("Judge"):
        assert not samples  # a classifier draws nothing
        return
    assert [path.name for path in samples] == ["epoch0000-step0000001.png"]
    size = Image.open(samples[0]).size
    image_size = yaml.safe_load(config_path.read_text())["data"]["init_args"].get("image_size", 32)
    assert size[0] <= SMOKE_IMAGES * (image_size + 1) + 1  # make_grid with padding 1: tiny, whatever images.num_images says
    for rows in ("class_rows", "prompt_rows"):
        for grid in (runs[0] / "images" / rows).glob("*.png"):
            width, height = Image.open(grid).size
            assert width <= 2 * (image_size + 1) + 1 and height <= 2 * (image_size + 1) + 1, grid


def test_the_issue_s_folder_ddpm_smoke_run_exits_0(fixtures, tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "lightning_gen", *smoke_options(REPO / "configs/folder_ddpm.yaml", fixtures, tmp_path)],
        cwd=REPO, env={**process_env(), "LIGHTNING_GEN_CACHE": str(tmp_path / "image_cache")}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warmup_steps=100 is longer than this run's 1 steps" in result.stderr
    assert "LR schedule: WarmupCosine decays over 1 optimizer step (from fast_dev_run)." in result.stderr
