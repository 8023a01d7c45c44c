"""A new model family plugs in through the protocol alone: a ~60-line toy generator that sample, evaluate
(FID and judged accuracy), export, compare and the ImageGrids callback all serve, with no change outside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import run_cli, save_checkpoint
from PIL import Image
from torch import nn
from torchvision.transforms.functional import pil_to_tensor
from torchvision.utils import make_grid

from lightning_gen.data import ShapesDataModule
from lightning_gen.models import GenerativeModel, Judge
from lightning_gen.models.conditioning import ClassConditioner, broadcast
from lightning_gen.protocol import SamplingOptions, has_latents, is_generator
from lightning_gen.seeding import randn

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class ToyGenerator(GenerativeModel):
    """A learned mean image per class plus Gaussian noise that each of ``steps`` refinement steps halves."""

    conditioning = "class"

    def __init__(self, data_facts=None, noise_scale: float = 0.2, sampling_steps: int = 3, optimizer=torch.optim.Adam):
        super().__init__(data_facts, optimizer)
        self.save_model_hyperparameters()
        self.noise_scale, self.sampling_steps = noise_scale, sampling_steps
        self.conditioner = ClassConditioner(self.data_facts, type(self).__name__)
        self.means = nn.Parameter(torch.full((len(self.condition_vocabulary), *self.image_shape), 0.5))

    @property
    def condition_vocabulary(self) -> tuple[str, ...]:
        return self.conditioner.vocabulary

    def batch_condition(self, batch):
        return self.conditioner.batch_condition(batch)

    def spread_conditions(self, n):
        return self.conditioner.spread(n, self.device)

    def condition_from_names(self, names, n):
        return self.conditioner.from_names(names, n, self.device)

    def condition_from_prompt(self, prompt, n):
        return self.conditioner.from_prompt(prompt, n, self.device)

    def condition_names(self, condition):
        return self.conditioner.names(condition)

    def sampling_options(self) -> SamplingOptions:
        return SamplingOptions(noise_shape=self.image_shape, defaults={"steps": self.sampling_steps})

    @torch.no_grad()
    def sample(self, n, condition=None, generator=None, steps=None, initial_noise=None):
        noise = randn((n, *self.image_shape), generator, self.device) if initial_noise is None else initial_noise.to(self.device)
        labels = self.spread_conditions(n) if condition is None else broadcast(torch.as_tensor(condition).view(-1), n)
        return (self.means[labels.to(self.device)] + self.noise_scale * noise / 2 ** (steps or self.sampling_steps)).clamp(0, 1)

    def training_step(self, batch, batch_idx):
        return nn.functional.mse_loss(self.means[batch["label"]], batch["image"])

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", nn.functional.mse_loss(self.means[batch["label"]], batch["image"]), batch_size=len(batch["image"]))


FACTS = ShapesDataModule(image_size=16).facts
DATA = {"class_path": "lightning_gen.data.ShapesDataModule", "init_args": {"num_images": 48, "image_size": 16, "val_fraction": 0.25}}
COLOURS = torch.rand(len(FACTS.class_names), 3, 1, 1, generator=torch.Generator().manual_seed(0)).expand(-1, -1, 16, 16)


def toy(noise_scale: float = 0.2) -> ToyGenerator:
    model = ToyGenerator(FACTS, noise_scale=noise_scale)
    with torch.no_grad():
        model.means.copy_(COLOURS)
    return model.eval()


def write_run(root: Path, name: str, noise_scale: float, group: str = "toys") -> Path:
    """A toy's checkpoint inside a run directory whose config names the data and the group (as a fit writes it)."""
    run = root / name / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    config = {  # no model section: a run's config may only name lightning_gen's classes; the checkpoint names the toy
        "data": DATA,
        "tracking": {"group": group, "name": name, "logger": "csv"},
        "trainer": {"default_root_dir": str(root)},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return save_checkpoint(toy(noise_scale), run / "checkpoints" / "last.ckpt", global_step=5)


def png(path: Path) -> torch.Tensor:
    return pil_to_tensor(Image.open(path).convert("RGB")).float() / 255


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy_runs")
    for noise_scale in (0.1, 0.4):
        write_run(root, f"toy_{noise_scale}", noise_scale)
    return root


def test_the_toy_is_a_generator_without_latents():
    model = toy()
    assert is_generator(model) and not has_latents(model)


def test_sample_serves_the_toy(runs, tmp_path):
    out = tmp_path / "grid.png"
    ckpt = runs / "toy_0.1" / "version_0" / "checkpoints" / "last.ckpt"
    run_cli("sample", "--ckpt_path", ckpt, "--num", 4, "--nrow", 4, "--out", out, "--seed", 3, "--condition", "blue square", "--steps", 1)
    model = toy(0.1)
    expected = model.sample(4, model.condition_from_names(["blue square"], 4), torch.Generator().manual_seed(3), steps=1)
    torch.testing.assert_close(png(out), make_grid(expected, nrow=4, padding=1), atol=1 / 255, rtol=0)


def test_evaluate_scores_the_toys_fid_and_its_judged_accuracy(runs, tmp_path):
    ckpt = runs / "toy_0.1" / "version_0" / "checkpoints" / "last.ckpt"
    extractor = "fixtures_features.TinyFeatures"
    out = tmp_path / "scores.json"
    run_cli("evaluate", "--ckpt_path", ckpt, "--feature_extractor", extractor, "--num", 24, "--metrics", "fid", "--out", out,
            "--save_images", tmp_path / "samples", "--cache_dir", tmp_path / "cache", "--log_to_run", "false")  # fmt: skip
    from fixtures_features import TinyFeatures

    from lightning_gen.metrics import formulas
    from lightning_gen.metrics.datamodules import datamodule_from_config

    datamodule = datamodule_from_config(DATA, "test")
    datamodule.setup()
    real = torch.cat([batch["image"] for batch in datamodule.val_dataloader()])
    fake = torch.stack([png(path) for path in sorted((tmp_path / "samples").glob("*.png"))])
    features = TinyFeatures().eval()
    with torch.no_grad():
        expected = formulas.fid(features(real).double(), features(fake).double())
    scores = {row["metric"]: row["value"] for row in json.loads(out.read_text())["scores"]}
    assert len(fake) == 24 and scores["fid"] == pytest.approx(expected, rel=0.02)

    judge_ckpt = save_checkpoint(half_trained_judge(), tmp_path / "judge.ckpt")
    judge = half_trained_judge().eval()
    run_cli("evaluate", "--ckpt_path", ckpt, "--judge", judge_ckpt, "--num", 48, "--out", tmp_path / "judged.json", "--log_to_run", "false")
    model = toy(0.1)
    with torch.no_grad():
        images = model.sample(48, model.spread_conditions(48), torch.Generator().manual_seed(0))
        judged = judge(images)["class"].argmax(1)
    expected = (judged == model.spread_conditions(48)).float().mean().item()
    assert 0.2 < expected < 0.8  # a judge that tells some classes apart, so a wrong pairing of images and conditions shows
    assert json.loads((tmp_path / "judged.json").read_text())["overall"] == pytest.approx(expected)  # a judge-only file is flat


def half_trained_judge() -> Judge:
    """A judge that knows the first half of the classes' colours: the toy's judged accuracy is then about one half."""
    torch.manual_seed(0)
    judge = Judge(FACTS, channels=(8, 16), hidden=8, dropout=0.0)
    optimizer = torch.optim.Adam(judge.parameters(), lr=1e-2)
    for _ in range(40):
        loss = nn.functional.cross_entropy(judge(COLOURS[:12])["class"], torch.arange(12))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return judge


def test_export_serves_the_toy(runs, tmp_path):
    from lightning_gen.commands.export import export

    ckpt = runs / "toy_0.1" / "version_0" / "checkpoints" / "last.ckpt"
    export(ckpt, tmp_path / "synthetic", per_class=1, trainer={"accelerator": "cpu"})
    rows = [json.loads(line) for line in (tmp_path / "synthetic" / "metadata.jsonl").read_text().splitlines()]
    assert sorted(row["class_name"] for row in rows) == sorted(FACTS.class_names)
    for row in rows:  # each image is its class's colour, up to the toy's small noise
        colour = COLOURS[FACTS.class_names.index(row["class_name"])]
        assert (png(tmp_path / "synthetic" / row["file_name"]) - colour).abs().mean() < 0.05


def test_compare_serves_the_toys(runs, tmp_path):
    out = tmp_path / "compare"
    run_cli("compare", "--group", "toys", "--root", runs, "--out", out, "--num_images", 4)
    samples = png(out / "samples.png")
    expected = []
    for noise_scale in (0.1, 0.4):
        model = toy(noise_scale)
        expected.append(model.sample(4, model.spread_conditions(4), torch.Generator().manual_seed(0)))
    grid = make_grid(torch.cat(expected), nrow=4, padding=1)
    # compare labels each run's row in a margin above and left of the images: the images sit bottom-right
    torch.testing.assert_close(samples[:, -grid.shape[1] :, -grid.shape[2] :], grid, atol=1 / 255, rtol=0)


def test_the_image_grids_callback_serves_the_toy(tmp_path):
    from lightning_gen.callbacks.image_grids import ImageGrids
    from lightning_gen.config.settings import ImageSettings

    callback = ImageGrids(tmp_path, ImageSettings(num_images=4, seed=5))
    callback.sampling_steps = 1
    model = toy()
    batch = {"image": COLOURS[:4].clone(), "label": torch.tensor([3, 1, 4, 1]), "index": torch.arange(4)}
    grids = callback.grids(model, batch)
    assert set(grids) == {"samples"}  # no latents: no reconstructions or interpolations; the toy adds no grids
    expected = model.sample(4, batch["label"], torch.Generator().manual_seed(5), steps=1)
    torch.testing.assert_close(grids["samples"], make_grid(expected, nrow=4, padding=1))
