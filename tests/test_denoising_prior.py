"""The diffusion prior (two-stage VAE): its fit on a far-from-Gaussian density, seeded determinism, the checkpoint
round trip through a real fit, and config validation."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_CONFIG, run_cli

from lightning_gen.checkpoints.loading import load_model
from lightning_gen.models import VAE
from lightning_gen.models.denoising_prior import DenoisingDensity
from lightning_gen.publish import PublishedModel

BLOBS = torch.tensor([[-3.0, 0.0], [3.0, 0.0]])
PRIOR_KEY = "latent_prior._extra_state"


def two_blobs(n: int, seed: int = 0) -> torch.Tensor:
    """Half the points at (−3, 0), half at (3, 0), spread 0.3: a bimodal density N(0, I) cannot imitate."""
    generator = torch.Generator().manual_seed(seed)
    side = torch.randint(2, (n,), generator=generator)
    return BLOBS[side] + 0.3 * torch.randn(n, 2, generator=generator)


def share_near_each_blob(samples: torch.Tensor) -> list[float]:
    return [((samples - blob).norm(dim=1) < 1.0).float().mean().item() for blob in BLOBS]


def small_density(**kwargs) -> DenoisingDensity:
    return DenoisingDensity(2, **{"fit_steps": 600, "width": 64, "blocks": 2, **kwargs})


@pytest.fixture(scope="module")
def fitted(one_torch_thread) -> DenoisingDensity:
    density = small_density()
    density.fit(two_blobs(4000), seed=0)
    return density


def test_samples_land_on_the_two_blobs_in_equal_shares(fitted):
    samples = fitted.sample(2000, torch.Generator().manual_seed(1), "cpu")
    near = share_near_each_blob(samples)
    assert sum(near) > 0.85 and all(abs(share - 0.5) < 0.08 for share in near), near
    # The baseline a VAE samples without a fitted prior: a Gaussian of the codes' mean and spread puts about 0.3 there.
    codes = two_blobs(4000)
    gaussian = torch.randn(2000, 2, generator=torch.Generator().manual_seed(1)) * codes.std(0) + codes.mean(0)
    assert sum(share_near_each_blob(gaussian)) < 0.4


def test_the_same_seed_fits_the_same_denoiser_and_sampling_is_deterministic(fitted, one_torch_thread):
    """What DDP relies on: every rank fits the gathered codes with seed 0, with no collective, and gets this one."""
    rng_before = torch.get_rng_state()
    again = small_density()
    again.fit(two_blobs(4000), seed=0)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the training's global random stream is untouched
    ours, theirs = fitted.get_extra_state(), again.get_extra_state()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[key], theirs[key]) for key in ours if key != "fitted")
    first = fitted.sample(50, torch.Generator().manual_seed(4), "cpu")
    assert torch.equal(first, fitted.sample(50, torch.Generator().manual_seed(4), "cpu"))
    assert not torch.equal(first, fitted.sample(50, torch.Generator().manual_seed(5), "cpu"))
    seeds = [small_density(fit_steps=5) for _ in range(2)]
    for seed, density in enumerate(seeds):
        density.fit(two_blobs(4000), seed=seed)
    assert not torch.equal(*(density.get_extra_state()["denoiser.input.weight"] for density in seeds))


def test_extra_state_round_trip_samples_the_same(fitted):
    state = fitted.get_extra_state()
    assert all(isinstance(value, torch.Tensor) for key, value in state.items() if key != "fitted")
    restored = small_density()
    restored.set_extra_state(state)
    generator = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    assert torch.equal(restored.sample(20, generator(), "cpu"), fitted.sample(20, generator(), "cpu"))
    with pytest.raises(RuntimeError, match="size mismatch"):
        small_density(width=32).set_extra_state(state)  # loaded strictly: another width is refused


def test_a_refit_inside_inference_mode_warm_starts_and_moves_the_standardisation(one_torch_thread):
    """Validation runs under inference mode, where the refit at each validation epoch start happens."""
    density = small_density(fit_steps=10, refit_steps=3)
    with torch.inference_mode():
        density.fit(two_blobs(500), seed=0)
        before = density.get_extra_state()
        shifted = two_blobs(500) + torch.tensor([1.0, 2.0])
        density.fit(shifted, seed=0)
    after = density.get_extra_state()
    torch.testing.assert_close(after["code_mean"], shifted.mean(0))
    torch.testing.assert_close(after["code_std"], shifted.std(0))
    assert not torch.equal(before["denoiser.output.weight"], after["denoiser.output.weight"])


@pytest.fixture(scope="module")
def diffusion_checkpoint(tmp_path_factory, one_torch_thread) -> Path:
    folder = tmp_path_factory.mktemp("diffusion_prior")
    config = copy.deepcopy(TINY_CONFIG)
    config["model"]["init_args"].update({"prior": "diffusion", "prior_fit_images": 64, "prior_fit_steps": 20, "prior_width": 16})
    config["trainer"]["default_root_dir"] = str(folder / "runs")
    config["ema"] = {"decay": 0.9}
    # Step 6 comes after the first validation (5 steps an epoch), which fitted the denoiser.
    config["snapshots"] = config["checkpointing"] = {"every_n_steps": 6}
    path = folder / "diffusion.yaml"
    path.write_text(yaml.safe_dump(config))
    run_cli("fit", "--config", path)
    return next((folder / "runs").rglob("last.ckpt"))


def test_the_checkpoint_holds_the_denoiser_as_plain_tensors_outside_the_optimizer(diffusion_checkpoint):
    checkpoint = torch.load(diffusion_checkpoint, map_location="cpu", weights_only=True)
    state = checkpoint["state_dict"][PRIOR_KEY]
    assert state["fitted"] and state["code_mean"].shape == (8,) and state["denoiser.input.weight"].shape == (16, 8)
    model = load_model(diffusion_checkpoint)
    # Not weights of the model: the same parameters as a standard-prior VAE, and only those in the optimizer.
    standard = VAE(model.data_facts, channels=[8, 16], latent_dim=8)
    assert [name for name, _ in model.named_parameters()] == [name for name, _ in standard.named_parameters()]
    assert len(checkpoint["optimizer_states"][0]["state"]) == len(list(standard.parameters()))
    # sample() draws z from the stored denoiser: the same as an independent density built from the checkpoint entry.
    density = DenoisingDensity(8, width=16)
    density.set_extra_state(state)
    expected = model.decode(density.sample(6, torch.Generator().manual_seed(3), "cpu"))
    assert torch.equal(model.sample(6, generator=torch.Generator().manual_seed(3)), expected)
    assert torch.equal(load_model(diffusion_checkpoint).sample(6, generator=torch.Generator().manual_seed(3)), expected)
    standard_samples = model.decode(torch.randn(6, 8, generator=torch.Generator().manual_seed(3)))
    assert torch.equal(model.sample(6, generator=torch.Generator().manual_seed(3), prior="standard"), standard_samples)
    assert not torch.allclose(expected, standard_samples)


def test_a_weight_snapshot_and_a_published_model_keep_the_denoiser(diffusion_checkpoint, tmp_path):
    """Both hold safetensors only: the denoiser travels as one tensor per entry, at its own dtype (weights go bf16)."""
    snapshot = sorted(diffusion_checkpoint.parent.glob("snapshot-step*.safetensors"))[0]
    step = int(snapshot.stem.removeprefix("snapshot-step"))
    periodic = torch.load(diffusion_checkpoint.parent / f"periodic-step{step:07d}.ckpt", map_location="cpu", weights_only=True)
    density = DenoisingDensity(8, width=16)
    density.set_extra_state(periodic["state_dict"][PRIOR_KEY])
    expected = density.sample(5, torch.Generator().manual_seed(6), "cpu")
    assert torch.equal(load_model(snapshot).sample_latents(5, torch.Generator().manual_seed(6)), expected)
    model = load_model(diffusion_checkpoint)
    PublishedModel.wrap(model).save_pretrained(tmp_path / "published")
    published = PublishedModel.from_pretrained(tmp_path / "published")
    generator = lambda: torch.Generator().manual_seed(6)  # noqa: E731
    assert torch.equal(published.model.sample_latents(5, generator()), model.sample_latents(5, generator()))


def test_an_unknown_prior_is_one_sentence(tiny_config, capsys):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        run_cli("fit", "--config", tiny_config, "--model.init_args.prior", "difusion")
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "\n" not in err, err
    assert "--model.init_args.prior is not valid" in err and "'standard', 'gmm', 'diffusion'" in err, err


def test_a_cvae_fits_its_diffusion_prior_on_the_kept_images_codes(tmp_path, one_torch_thread):
    """The CVAE inherits the prior (unconditional: one denoiser for the codes of every class); its conditions grid
    and samples draw z from it."""
    config = copy.deepcopy(TINY_CONFIG)
    config["model"] = {
        "class_path": "lightning_gen.models.CVAE",
        "init_args": {
            "conditioning": "class",
            "channels": [8, 16],
            "latent_dim": 4,
            "prior": "diffusion",
            "prior_fit_steps": 10,
            "prior_width": 8,
        },
    }
    config["trainer"].update({"max_epochs": 1, "default_root_dir": str(tmp_path / "runs")})
    (tmp_path / "cvae.yaml").write_text(yaml.safe_dump(config))
    run_cli("fit", "--config", tmp_path / "cvae.yaml")
    checkpoint = next((tmp_path / "runs").rglob("last.ckpt"))
    assert next(checkpoint.parent.parent.glob("images/conditions/*"), None) is not None
    model = load_model(checkpoint)
    density = DenoisingDensity(4, width=8)
    density.set_extra_state(torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"][PRIOR_KEY])
    condition = model.spread_conditions(3)
    expected = model.decode(density.sample(3, torch.Generator().manual_seed(8), "cpu"), condition)
    assert torch.equal(model.sample(3, condition, torch.Generator().manual_seed(8)), expected)
