"""`edit`: attribute directions from training posterior means (checked against a hand computation),
strips, the per-checkpoint cache, the CVAE condition swap, CelebA/AwA2 fixtures, and the error sentences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, run_cli, run_process
from fixtures_awa2 import write_awa2
from fixtures_celeba import write_celeba
from latent_checkpoints import cvae, train_tiny, write_photo
from PIL import Image

from lightning_gen.checkpoints.loading import load_model
from lightning_gen.data import ShapesDataModule
from lightning_gen.data.preprocess import load_user_image
from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts
from lightning_gen.latent import directions as directions_module
from lightning_gen.latent.directions import Directions, require_attributes
from lightning_gen.latent.editing import edit_offset, slider_edit
from lightning_gen.latent.mixing import to_pil
from lightning_gen.models import VAE

SIDE = 16
TILE = SIDE + 1
REFERENCES = 64


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_torch_thread) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("edit")
    celeba, awa2 = root / "celeba", root / "awa2" / "Animals_with_Attributes2"
    write_celeba(celeba)
    write_awa2(awa2)
    cache = str(root / "image_cache")
    return {
        "vae": train_tiny(root, "vae"),
        "cvae": train_tiny(root, "cvae", model=cvae("class")),
        "celeba": train_tiny(
            root,
            "celeba",
            data={
                "class_path": "lightning_gen.data.CelebADataModule",
                "init_args": {"root": str(celeba), "image_size": SIDE, "batch_size": 4, "cache_dir": cache},
            },
        ),
        "awa2": train_tiny(
            root,
            "awa2",
            data={
                "class_path": "lightning_gen.data.AwA2DataModule",
                "init_args": {"root": str(awa2), "image_size": SIDE, "batch_size": 4, "val_fraction": 0.25, "cache_dir": cache},
            },
        ),
    }


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    return write_photo(tmp_path_factory.mktemp("photo") / "x.jpg", (70, 50), (230, 30, 30))


def tiles(path: Path, count: int) -> list[np.ndarray]:
    strip = np.asarray(Image.open(path).convert("RGB"))
    assert strip.shape == (TILE + 1, count * TILE + 1, 3)
    return [strip[1 : 1 + SIDE, 1 + i * TILE : 1 + i * TILE + SIDE].astype(int) for i in range(count)]


def pixels(image: torch.Tensor) -> np.ndarray:
    return np.asarray(to_pil(image.reshape(-1, SIDE, SIDE))).astype(int)


def hand_direction(model, attribute: str, references: int) -> torch.Tensor:
    """Mean latent of the first ``references`` training images (in the loader's order) with minus without the attribute."""
    data = TINY_CONFIG["data"]["init_args"]
    datamodule = ShapesDataModule(**data)
    datamodule.setup("fit")
    latents, present = [], []
    column = datamodule.attribute_names.index(attribute)
    for batch in datamodule.train_dataloader():
        with torch.no_grad():
            latents.append(model.encode(batch["image"]))
        present.append(batch["attributes"][:, column] > 0.5)
    latents, present = torch.cat(latents)[:references], torch.cat(present)[:references]
    return latents[present].mean(0) - latents[~present].mean(0)


def test_strip_moves_along_the_hand_computed_direction(runs, photo, tmp_path):
    out = tmp_path / "edit.png"
    run_cli(
        "edit",
        "--ckpt_path",
        runs["vae"],
        "--image",
        photo,
        "--attribute",
        "blue",
        "--strengths=-1,0,2",
        "--references",
        REFERENCES,
        "--neighbours",
        0,
        "--out",
        out,
    )
    shown = tiles(out, 4)
    model = load_model(runs["vae"])
    image = load_user_image(photo, model.data_facts)
    direction = hand_direction(model, "blue", REFERENCES)
    with torch.no_grad():
        z = model.encode(image)
        expected = [model.decode(z + strength * direction) for strength in (-1.0, 0.0, 2.0)]
    assert np.abs(shown[0] - pixels(image)).max() <= 1
    for tile, image_expected in zip(shown[1:], expected):
        assert np.abs(tile - pixels(image_expected)).max() <= 1
    assert np.abs(pixels(expected[1]) - pixels(model.reconstruct(image).detach())).max() <= 1  # strength 0 = reconstruction


def hand_local_offset(model, z: torch.Tensor, towards: str, away: str | None, k: int, references: int) -> torch.Tensor:
    """Mean of the k nearest references with ``towards`` minus the k nearest with ``away`` (or without ``towards``),
    distances taken after removing the span of the two global directions (least squares, numpy)."""
    data = ShapesDataModule(**TINY_CONFIG["data"]["init_args"])
    data.setup("fit")
    latents, attributes = [], []
    for batch in data.train_dataloader():
        with torch.no_grad():
            latents.append(model.encode(batch["image"]))
        attributes.append(batch["attributes"] > 0.5)
    latents, attributes = torch.cat(latents)[:references].double().numpy(), torch.cat(attributes)[:references].numpy()
    names = list(data.attribute_names)
    has_towards = attributes[:, names.index(towards)]
    has_away = attributes[:, names.index(away)] if away else ~has_towards
    spans = [hand_direction(model, name, references).double().numpy() for name in ([towards, away] if away else [towards])]
    basis = np.stack(spans, 1)

    def residual(points):
        coefficients, *_ = np.linalg.lstsq(basis, points.T, rcond=None)
        return points - (basis @ coefficients).T

    query = residual(z.double().numpy())

    def nearest_mean(rows):
        group = latents[rows]
        distances = ((query[:, None, :] - residual(group)[None]) ** 2).sum(-1)
        return group[np.argsort(distances, axis=1, kind="stable")[:, :k]].mean(1)

    return torch.from_numpy(nearest_mean(has_towards) - nearest_mean(has_away)).float()


def test_local_directions_are_the_hand_computed_neighbour_differences(runs, photo, tmp_path):
    # Strength 40 makes the small offsets of a tiny model visible in pixels, so global and local edits differ.
    out = tmp_path / "local.png"
    run_cli(
        "edit",
        "--ckpt_path",
        runs["vae"],
        "--image",
        photo,
        "--from",
        "red",
        "--to",
        "blue",
        "--strengths",
        "40",
        "--references",
        REFERENCES,
        "--neighbours",
        5,
        "--out",
        out,
    )
    model = load_model(runs["vae"])
    image = load_user_image(photo, model.data_facts)
    with torch.no_grad():
        z = model.encode(image)
        local = model.decode(z + 40 * hand_local_offset(model, z, "blue", "red", 5, REFERENCES))
        global_ = model.decode(z + 40 * (hand_direction(model, "blue", REFERENCES) - hand_direction(model, "red", REFERENCES)))
    shown = tiles(out, 2)[1]
    assert np.abs(shown - pixels(local)).max() <= 1
    assert np.abs(pixels(local) - pixels(global_)).max() > 3


def test_local_directions_follow_where_the_attribute_lives():
    """An attribute written differently in two regions of the latent space: +1 along x above the x axis, +3
    below it. The global direction averages them (+2 everywhere); each image's local direction finds its own."""
    generator = torch.Generator().manual_seed(0)
    rows = []
    for upper in (True, False):
        for has in (False, True):
            y = (1.0 if upper else -1.0) + 0.05 * torch.randn(50, generator=generator)
            x = (1.0 if upper else 3.0) * has + 0.05 * torch.randn(50, generator=generator)
            rows.append((torch.stack([x, y], 1), torch.full((50,), has)))
    latents = torch.cat([r[0] for r in rows])
    present = torch.cat([r[1] for r in rows])[:, None]
    global_ = latents[present[:, 0]].mean(0) - latents[~present[:, 0]].mean(0)
    directions = Directions(("shiny",), global_[None], present.sum(0).float(), (~present).sum(0).float(), latents, present)
    queries = torch.tensor([[0.0, 1.0], [0.0, -1.0]])
    local = edit_offset(directions, attribute="shiny", neighbours=10).offsets(queries)
    assert torch.allclose(local, torch.tensor([[1.0, 0.0], [3.0, 0.0]]), atol=0.1)
    glob = edit_offset(directions, attribute="shiny", neighbours=0).offsets(queries)
    assert torch.allclose(glob, torch.tensor([[2.0, 0.0], [2.0, 0.0]]), atol=0.1)
    # Sliders add each attribute's local direction times its strength; negative removes it.
    assert torch.allclose(slider_edit(directions, {"shiny": -0.5}, neighbours=10).offsets(queries), -0.5 * local)


def test_directions_are_cached_per_checkpoint(runs, photo, tmp_path, monkeypatch):
    run_cli("edit", "--ckpt_path", runs["vae"], "--image", photo, "--attribute", "red", "--references", 32, "--out", tmp_path / "a.png")
    cached = list((runs["vae"].parent.parent / "directions").glob("last-32-*.pt"))
    assert len(cached) == 1

    def must_not_encode(*args, **kwargs):
        raise AssertionError("the cached directions should have been used")

    monkeypatch.setattr(directions_module, "compute_directions", must_not_encode)
    run_cli(
        "edit",
        "--ckpt_path",
        runs["vae"],
        "--image",
        photo,
        "--from",
        "red",
        "--to",
        "green",
        "--references",
        32,
        "--out",
        tmp_path / "b.png",
    )
    # Another number of references is another cache entry: it must encode again.
    with pytest.raises(AssertionError, match="cached directions"):
        run_cli("edit", "--ckpt_path", runs["vae"], "--image", photo, "--attribute", "red", "--references", 33, "--out", tmp_path / "c.png")


def test_from_to_is_the_difference_of_two_directions(runs, photo, tmp_path):
    out = tmp_path / "swap.png"
    run_cli(
        "edit",
        "--ckpt_path",
        runs["vae"],
        "--image",
        photo,
        "--from",
        "red",
        "--to",
        "cyan",
        "--strengths",
        "1",
        "--references",
        REFERENCES,
        "--neighbours",
        0,
        "--out",
        out,
    )
    model = load_model(runs["vae"])
    image = load_user_image(photo, model.data_facts)
    direction = hand_direction(model, "cyan", REFERENCES) - hand_direction(model, "red", REFERENCES)
    with torch.no_grad():
        expected = model.decode(model.encode(image) + direction)
    assert np.abs(tiles(out, 2)[1] - pixels(expected)).max() <= 1


def test_cvae_swaps_the_condition(runs, photo, tmp_path):
    out = tmp_path / "cvae.png"
    run_cli(
        "edit",
        "--ckpt_path",
        runs["cvae"],
        "--image",
        photo,
        "--attribute",
        "red",
        "--strengths",
        "0",
        "--image_condition",
        "red circle",
        "--condition",
        "blue square",
        "--references",
        32,
        "--out",
        out,
    )
    model = load_model(runs["cvae"])
    image = load_user_image(photo, model.data_facts)
    red, blue = (model.condition_from_names([name], 1) for name in ("red circle", "blue square"))
    with torch.no_grad():
        swapped = model.decode(model.encode(image, red), blue)
        kept = model.decode(model.encode(image, red), red)
    shown = tiles(out, 2)[1]
    assert np.abs(shown - pixels(swapped)).max() <= 1
    assert not np.array_equal(pixels(swapped), pixels(kept))


@pytest.mark.parametrize("run, attribute", [("celeba", "Blond_Hair"), ("awa2", "white")])
def test_real_dataset_fixtures(runs, photo, tmp_path, run, attribute):
    out = tmp_path / f"{run}.png"
    run_cli("edit", "--ckpt_path", runs[run], "--image", photo, "--attribute", attribute, "--out", out)
    shown = tiles(out, 6)
    model = load_model(runs[run])
    with torch.no_grad():
        reconstruction = model.reconstruct(load_user_image(photo, model.data_facts))
    assert np.abs(shown[3] - pixels(reconstruction)).max() <= 1  # strengths -2,-1,0,1,2: the middle is strength 0
    assert any((runs[run].parent.parent / "directions").glob("*.pt"))


def test_unknown_attribute_lists_the_valid_ones(runs, photo, tmp_path):
    result = run_process("edit", "--ckpt_path", runs["vae"], "--image", photo, "--attribute", "purple", "--out", tmp_path / "x.png")
    assert result.returncode == 2 and "'purple' is not an attribute" in result.stderr
    assert "red, green, blue, yellow, magenta, cyan, circle, square, triangle, cross, small, large" in result.stderr
    assert "Traceback" not in result.stderr


def test_other_user_errors_are_one_sentence(runs, photo, tmp_path):
    for options, message in [
        (["--attribute", "red", "--strengths", "a,b"], "--strengths must be comma-separated numbers"),
        (["--from", "red"], "pass --attribute NAME, or --from NAME --to NAME"),
        (["--attribute", "red", "--from", "red", "--to", "blue"], "not both"),
    ]:
        result = run_process("edit", "--ckpt_path", runs["vae"], "--image", photo, *options, "--out", tmp_path / "x.png")
        assert result.returncode == 2 and message in result.stderr, result.stderr
    with pytest.raises(UserError, match="has no attributes"):
        require_attributes(VAE(DataFacts(image_size=SIDE), channels=(8,), latent_dim=2))


def test_missing_run_config_asks_for_config(runs, photo, tmp_path):
    lonely = tmp_path / "lonely.ckpt"
    lonely.write_bytes(runs["vae"].read_bytes())
    result = run_process("edit", "--ckpt_path", lonely, "--image", photo, "--attribute", "red", "--out", tmp_path / "x.png")
    assert result.returncode == 2 and "pass the training config with --config" in result.stderr


def test_validation_edit_grid(tmp_path):
    import copy

    import yaml

    config = copy.deepcopy(TINY_CONFIG)
    config["trainer"]["max_epochs"] = 1
    config["images"] = {**config["images"], "edit_attributes": ["red", "large"], "edit_strengths": [-1.0, 0.0, 1.0]}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(config))
    run_cli("fit", "--config", path, "--trainer.default_root_dir", tmp_path / "runs")
    images = tmp_path / "runs/grid/version_0/images"
    rows = config["images"]["num_images"]
    for attribute in ("red", "large"):
        (grid_path,) = (images / f"edit_{attribute}").glob("*.png")
        grid = np.asarray(Image.open(grid_path).convert("RGB")).astype(int)
        assert grid.shape == (rows * TILE + 1, 3 * TILE + 1, 3)
    (recon_path,) = (images / "reconstructions").glob("*.png")
    recon = np.asarray(Image.open(recon_path).convert("RGB")).astype(int)
    for row in range(rows):  # the strength-0 column is the reconstructions grid's second row
        edit_tile = grid[1 + row * TILE : 1 + row * TILE + SIDE, 1 + TILE : 1 + TILE + SIDE]
        recon_tile = recon[1 + TILE : 1 + TILE + SIDE, 1 + row * TILE : 1 + row * TILE + SIDE]
        assert np.abs(edit_tile - recon_tile).max() <= 1
    path.write_text(yaml.safe_dump({**config, "images": {**config["images"], "edit_attributes": ["purple"]}}))
    result = run_process("fit", "--config", path, "--trainer.default_root_dir", tmp_path / "runs2")
    assert result.returncode == 2 and "images.edit_attributes names 'purple'" in result.stderr
