"""objective flow_matching: the loss by hand, the samplers and the inversion on known velocity fields, guidance,
the settings it refuses, resume, and sample / evaluate / export / mix on a flow checkpoint."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import TINY_CONFIG, SimulatedKill, run_cli
from diffusers import FlowMatchEulerDiscreteScheduler
from latent_checkpoints import TINY_UNET, train_tiny, write_photo
from PIL import Image

from lightning_gen.checkpoints.loading import load_model
from lightning_gen.data.preprocess import load_user_image
from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts
from lightning_gen.models import DDPM
from lightning_gen.models.flow_matching import FlowMatching

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FACTS = DataFacts(image_size=8, channels=3, class_names=("red circle", "blue square", "green cross"))
FLOW = {"objective": "flow_matching", "min_snr_gamma": None}


def flow_model(**kwargs) -> DDPM:
    torch.manual_seed(0)
    return DDPM(FACTS, unet={"block_out_channels": [8, 16], "layers_per_block": 1, "norm_num_groups": 8}, **{**FLOW, **kwargs})


class Output:
    def __init__(self, sample: torch.Tensor):
        self.sample = sample


class StandIn(torch.nn.Module):
    """A UNet stand-in: ``field(sample, timestep, class_labels)`` → velocity; records every call's inputs."""

    def __init__(self, field):
        super().__init__()
        self.field, self.calls = field, []

    def forward(self, sample, timestep, class_labels=None, **_):
        self.calls.append((sample.clone(), timestep.clone(), class_labels))
        return Output(self.field(sample, timestep, class_labels))


def test_loss_equals_the_velocity_mse_by_hand():
    model = flow_model(conditioning="class")
    model.unet = StandIn(lambda sample, timestep, labels: 0.5 * sample + timestep.view(-1, 1, 1, 1) / 1000 + labels.view(-1, 1, 1, 1))
    generator = torch.Generator().manual_seed(1)
    batch = {"image": torch.rand(3, 3, 8, 8, generator=generator), "label": torch.tensor([0, 2, 1])}
    noise, times = torch.randn(3, 3, 8, 8, generator=generator), torch.tensor([0.1, 0.5, 0.9])
    loss = model.diffusion_loss(batch, drop=False, draws=(noise, times))
    clean = batch["image"] * 2 - 1
    t = times.view(-1, 1, 1, 1)
    noisy = (1 - t) * clean + t * noise
    prediction = 0.5 * noisy + t + batch["label"].view(-1, 1, 1, 1)
    assert loss.item() == pytest.approx(((prediction - (noise - clean)) ** 2).mean().item(), rel=1e-6)
    sample, timestep, _ = model.unet.calls[0]
    torch.testing.assert_close(sample, noisy)
    torch.testing.assert_close(timestep, times * 1000)  # the UNet's timestep input is t·num_train_timesteps


def test_training_pair_follows_diffusers_scale_noise_and_euler_step():
    """x_t is diffusers' scale_noise at sigma = t, and one Euler step of the true velocity from t to 0 lands on x0."""
    flow = FlowMatching(num_train_timesteps=1000, time_distribution="uniform")
    clean, noise = torch.rand(2, 3, 4, 4) * 2 - 1, torch.randn(2, 3, 4, 4)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000)
    scheduler.set_timesteps(1)
    timestep = scheduler.timesteps[0]  # sigma 1, then the step to 0
    times = (timestep / 1000).expand(2)
    noisy, model_timesteps, velocity = flow.training_pair(clean, noise, times)
    torch.testing.assert_close(noisy, scheduler.scale_noise(clean, timestep.expand(2), noise))
    torch.testing.assert_close(model_timesteps, timestep.expand(2))
    torch.testing.assert_close(scheduler.step(velocity, timestep, noisy).prev_sample, clean)
    middle = flow.training_pair(clean, noise, torch.full((2,), 0.25))[0]
    torch.testing.assert_close(middle, 0.75 * clean + 0.25 * noise)


def test_time_distributions():
    generator = torch.Generator().manual_seed(0)
    uniform = FlowMatching(time_distribution="uniform").draw_times(20000, generator, "cpu")
    assert 0 <= uniform.min() and uniform.max() <= 1 and uniform.mean().item() == pytest.approx(0.5, abs=0.01)
    logit_normal = FlowMatching(time_distribution="logit_normal", logit_mean=1.0, logit_std=0.5).draw_times(20000, generator, "cpu")
    logits = torch.log(logit_normal / (1 - logit_normal))
    assert logits.mean().item() == pytest.approx(1.0, abs=0.02) and logits.std().item() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize(("sampler", "unet_calls"), [("euler", 5), ("heun", 9)])
def test_samplers_integrate_a_constant_field_exactly(sampler, unet_calls):
    """dx/dt = c from t = 1 to 0 ends at x1 − c, whatever the step count (Euler and Heun are exact on it)."""
    model = flow_model()
    velocity = 0.3 * torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    model.unet = StandIn(lambda sample, timestep, labels: velocity.expand_as(sample))
    start = 0.5 * torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(3)) - 0.25
    images = model.sample(2, steps=5, sampler=sampler, initial_noise=start)
    # exact up to float32 rounding (Heun divides v·σ by σ again); a wrong sign or time direction is off by 2c
    torch.testing.assert_close(images * 2 - 1, start - velocity, atol=1e-5, rtol=0)
    assert len(model.unet.calls) == unet_calls
    timesteps = torch.stack([call[1][0] for call in model.unet.calls])
    assert timesteps[0] == 1000 and timesteps.min() == 1  # from t = 1 down to the last step before 0


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_samplers_follow_the_straight_lines_to_an_image(sampler):
    """The field (x − x0)/t of the straight lines into x0: any noise is carried onto x0 exactly."""
    model = flow_model()
    target = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(4)) * 2 - 1
    model.unet = StandIn(lambda sample, timestep, labels: (sample - target) / (timestep.view(-1, 1, 1, 1) / 1000))
    noise = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    images = model.sample(3, steps=4, sampler=sampler, initial_noise=noise)
    torch.testing.assert_close(images * 2 - 1, target.expand(3, -1, -1, -1), atol=1e-5, rtol=0)
    frames = model.denoising_progression(None, torch.Generator().manual_seed(0), num_frames=3, steps=4)
    torch.testing.assert_close(frames[0] * 2 - 1, target.expand(3, -1, -1, -1), atol=1e-5, rtol=0)  # every x0 prediction is x0


def test_inversion_of_a_constant_field_is_exact_and_sampling_undoes_it():
    model = flow_model()
    velocity = 0.3 * torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    model.unet = StandIn(lambda sample, timestep, labels: velocity.expand_as(sample))
    images = 0.5 + 0.25 * torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(7)) - 0.125
    noise = model.invert(images, steps=6)
    torch.testing.assert_close(noise, images * 2 - 1 + velocity, atol=1e-6, rtol=0)
    timesteps = torch.stack([call[1][0] for call in model.unet.calls])
    assert timesteps[0] == 0 and len(timesteps) == 6 and bool((timesteps.diff() > 0).all())  # t from 0 upwards
    options = model.sampling_options().deterministic({"steps": 6, "guidance_scale": 1.0})
    torch.testing.assert_close(model.sample(2, initial_noise=noise, **options), images, atol=1e-6, rtol=0)


def test_classifier_free_guidance_mixes_the_velocities():
    """Per-class constant fields: the guided run integrates null + s·(class − null), the unguided one the class's."""
    model = flow_model(conditioning="class")
    fields = torch.tensor([0.1, -0.2, 0.3, 0.05])  # the classes, then the null class (id 3)
    model.unet = StandIn(lambda sample, timestep, labels: fields[labels].view(-1, 1, 1, 1).expand_as(sample))
    start = torch.zeros(2, 3, 8, 8)
    guided = model.sample(2, condition=torch.tensor([0, 1]), steps=3, guidance_scale=3.0, initial_noise=start) * 2 - 1
    expected = -(fields[3] + 3.0 * (fields[:2] - fields[3]))
    torch.testing.assert_close(guided[:, 0, 0, 0], expected, atol=1e-6, rtol=0)
    plain = model.sample(2, condition=torch.tensor([0, 1]), steps=3, guidance_scale=1.0, initial_noise=start) * 2 - 1
    torch.testing.assert_close(plain[:, 0, 0, 0], -fields[:2], atol=1e-6, rtol=0)


def test_sampling_options_and_refused_settings():
    model = flow_model(sampling_steps=10)
    options = model.sampling_options()
    assert options.defaults == {"steps": 10, "guidance_scale": 2.0, "sampler": "euler"}
    assert options.choices == {"sampler": ("euler", "heun")} and options.deterministic_sampler == "euler"
    with pytest.raises(UserError, match="--sampler ddim is not one of euler, heun"):
        options.given({"sampler": "ddim"})
    with pytest.raises(UserError, match="min_snr_gamma .* does not apply to objective flow_matching, so set it to null"):
        DDPM(FACTS, objective="flow_matching")
    with pytest.raises(UserError, match="model.sampler must be euler or heun for objective flow_matching"):
        flow_model(sampler="ddim")
    with pytest.raises(UserError, match="model.sampler must be ddim or ddpm for objective diffusion"):
        DDPM(FACTS, sampler="euler")
    assert DDPM(FACTS).sampling_options().defaults["sampler"] == "ddim"  # the diffusion objective is unchanged


def test_validation_draws_times_in_the_unit_interval_per_image():
    model = flow_model()
    batch = {"image": torch.rand(4, 3, 8, 8), "index": torch.tensor([5, 6, 7, 8])}
    _, times = model.evaluation_draws(batch)
    _, again = model.evaluation_draws({"image": batch["image"][2:], "index": batch["index"][2:]})
    assert times.dtype == torch.float32 and bool(((times > 0) & (times < 1)).all())
    torch.testing.assert_close(times[2:], again)  # a function of the image's index, not of the batch


# -- through the command line --------------------------------------------------------------------------------------
FLOW_MODEL = {
    "class_path": "lightning_gen.models.DDPM",
    "init_args": {
        "conditioning": "class",
        "unet": TINY_UNET,
        **FLOW,
        "sampling_steps": 4,
        "validation_steps": 2,
        "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.003}},
    },
}


def flow_config(path: Path, **trainer) -> Path:
    config = copy.deepcopy(TINY_CONFIG)
    config["model"] = FLOW_MODEL
    config["trainer"].update(trainer)
    path.write_text(yaml.safe_dump(config))
    return path


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def test_resume_equals_an_uninterrupted_run(tmp_path):
    config = flow_config(tmp_path / "tiny.yaml")
    every = ["--checkpointing.every_n_steps", "3"]
    run_cli("fit", "--config", config, "--trainer.default_root_dir", tmp_path / "straight", *every)
    kill = '{"class_path": "conftest.KillAtStep", "init_args": {"step": 7}}'
    with pytest.raises(SimulatedKill):
        run_cli("fit", "--config", config, "--trainer.default_root_dir", tmp_path / "split", "--trainer.callbacks+", kill, *every)
    assert load(tmp_path / "split/tiny/version_0/checkpoints/last.ckpt")["global_step"] == 7
    run_cli("fit", "--config", config, "--trainer.default_root_dir", tmp_path / "split", "--ckpt_path", "last", *every)
    straight = load(tmp_path / "straight/tiny/version_0/checkpoints/last.ckpt")
    resumed = load(tmp_path / "split/tiny/version_0/checkpoints/last.ckpt")
    assert straight["global_step"] == resumed["global_step"] == 10
    for key in ("state_dict", "current_model_state"):
        for name, value in straight[key].items():
            torch.testing.assert_close(value, resumed[key][name], rtol=0, atol=0, msg=name)


@pytest.fixture(scope="module")
def flow_checkpoint(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("flow"), "flow", model=FLOW_MODEL, epochs=2)


def test_inversion_round_trip_on_a_trained_model(flow_checkpoint):
    """sample(invert(x)) ≈ x: Euler's error shrinks with the steps (measured: 0.027 and 0.0055 mean at 4 and 16 steps)."""
    model = load_model(flow_checkpoint)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    condition = torch.tensor([0, 5])
    errors = []
    for steps in (4, 16):
        noise = model.invert(images, condition, steps=steps)
        regenerated = model.sample(2, condition, initial_noise=noise, steps=steps, guidance_scale=1.0, sampler="euler")
        errors.append((regenerated - images).abs().mean().item())
    assert errors[1] < errors[0] / 2 and errors[1] < 0.015, errors


def test_sample_evaluate_export_and_mix_on_a_flow_checkpoint(flow_checkpoint, tmp_path):
    from fixtures_features import TinyFeatures

    grid = tmp_path / "grid.png"
    run_cli("sample", "--ckpt_path", flow_checkpoint, "--num", "4", "--nrow", "2", "--steps", "3", "--sampler", "heun", "--out", grid)
    assert Image.open(grid).size == (2 * 17 + 1, 2 * 17 + 1)

    extractor = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(TinyFeatures()), extractor)
    scores = tmp_path / "scores.json"
    common = ("--feature_extractor", extractor, "--num", 12, "--batch_size", 6, "--cache_dir", tmp_path / "cache", "--metrics", "fid")
    run_cli("evaluate", "--ckpt_path", flow_checkpoint, *common, "--steps", 3, "--out", scores)
    fid = {row["metric"]: row for row in json.loads(scores.read_text())["scores"]}["fid"]
    assert fid["generated"] == 12 and fid["value"] > 0

    out = tmp_path / "export"
    run_cli("export", "--ckpt_path", flow_checkpoint, "--out", out, "--per_class", 1, "--steps", 2, "--batch_size", 8)
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and {row["sampler"] for row in rows} == {"euler"}

    photos = [write_photo(tmp_path / "a.png", (20, 20), (230, 30, 30)), write_photo(tmp_path / "b.png", (20, 20), (30, 60, 240))]
    strip = tmp_path / "mix.png"
    run_cli(
        "mix", "--ckpt_path", flow_checkpoint, *photos, "--condition", "red circle", "--steps", 3, "--inversion_steps", 3, "--out", strip
    )
    model = load_model(flow_checkpoint)
    image = load_user_image(photos[0], model.data_facts)
    condition = model.condition_from_names(["red circle"], 1)
    noise = model.invert(image, condition, steps=3)
    regenerated = model.sample(1, condition, initial_noise=noise, steps=3, guidance_scale=1.0, sampler="euler")
    shown = torch.from_numpy(np.array(Image.open(strip).convert("RGB"))[1:17, 18:34]).permute(2, 0, 1) / 255
    assert (shown - regenerated[0]).abs().max().item() <= 1.5 / 255  # the strip's first mixed tile is the inverted image regenerated
