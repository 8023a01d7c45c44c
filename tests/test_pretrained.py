"""``model.pretrained``: a tiny diffusers pipeline saved here (random weights) is the source. The first step's loss equals
diffusers' own loss on the same batch and noise; data that does not fit is one sentence; nothing is downloaded unasked."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDPMPipeline, UNet2DModel
from fixtures_pretrained import TINY_UNET, save_tiny_pipeline
from huggingface_hub import constants

from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts
from lightning_gen.models import DDPM
from lightning_gen.models import pretrained as pretrained_module

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def facts(image_size: int = 16, channels: int = 3) -> DataFacts:
    return DataFacts(image_size=image_size, channels=channels)


def diffusers_loss(folder: Path, images: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """The loss diffusers' own training example computes: its UNet, its scheduler's add_noise, its prediction type's target."""
    pipe = DDPMPipeline.from_pretrained(folder)
    clean = images * 2.0 - 1.0
    noisy = pipe.scheduler.add_noise(clean, noise, timesteps)
    with torch.no_grad():
        prediction = pipe.unet(noisy, timesteps).sample
    if pipe.scheduler.config.prediction_type == "epsilon":
        target = noise
    else:
        target = pipe.scheduler.get_velocity(clean, noise, timesteps)
    return F.mse_loss(prediction, target)


# The DDPM is configured the other way round each time: the schedule must come from the checkpoint, not the config.
SCHEDULES = [("linear", "epsilon", "cosine", "v_prediction"), ("squaredcos_cap_v2", "v_prediction", "linear", "epsilon")]


@pytest.mark.parametrize(("betas", "prediction", "config_betas", "config_prediction"), SCHEDULES, ids=["linear-eps", "cosine-v"])
def test_first_training_step_loss_equals_diffusers_loss(betas, prediction, config_betas, config_prediction, tmp_path):
    folder = save_tiny_pipeline(tmp_path / "pipe", beta_schedule=betas, prediction_type=prediction, num_train_timesteps=500)
    model = DDPM(
        facts(), pretrained=str(folder), unet={"block_out_channels": [8, 8]}, beta_schedule=config_betas,
        prediction_type=config_prediction, num_train_timesteps=1000, min_snr_gamma=None, sampling_steps=10,
    )  # fmt: skip
    assert tuple(model.unet.config.block_out_channels) == TINY_UNET["block_out_channels"]  # the config's unet is not used
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    # training_step draws the noise, then the timesteps, from the training generator: draw the same here.
    generator = model.training_generator()
    noise = torch.randn(images.shape, generator=generator)
    timesteps = torch.randint(500, (4,), generator=generator)
    with pytest.warns(UserWarning, match="self.log"):  # outside a trainer Lightning only warns that it does not log
        loss = model.training_step({"image": images}, 0)
    expected = diffusers_loss(folder, images, noise, timesteps)
    torch.testing.assert_close(loss.detach(), expected, rtol=0, atol=1e-6)
    assert loss.item() > 0.1  # a real loss of random weights, not a degenerate zero


def test_the_checkpoint_records_pretrained_and_loads_back_without_changing_weights(tmp_path):
    folder = save_tiny_pipeline(tmp_path / "pipe")
    model = DDPM(facts(), pretrained=str(folder))
    assert model.hparams["pretrained"] == str(folder)
    reference = UNet2DModel.from_pretrained(folder, subfolder="unet")
    for key, value in reference.state_dict().items():
        assert torch.equal(model.unet.state_dict()[key], value), key


def test_a_bare_unet_folder_keeps_the_config_schedule(tmp_path):
    save_tiny_pipeline(tmp_path / "pipe")
    shutil.copytree(tmp_path / "pipe" / "unet", tmp_path / "bare")
    model = DDPM(facts(), pretrained=str(tmp_path / "bare"), beta_schedule="cosine", prediction_type="v_prediction")
    assert (model.beta_schedule, model.prediction_type) == ("cosine", "v_prediction")
    assert torch.equal(model.unet.conv_in.weight, UNet2DModel.from_pretrained(tmp_path / "bare").conv_in.weight)


def test_other_channels_or_a_size_the_unet_cannot_halve_is_one_sentence(tmp_path):
    folder = save_tiny_pipeline(tmp_path / "pipe")
    with pytest.raises(UserError, match=r"takes 3-channel images but the data has 1; use 3-channel data") as error:
        DDPM(facts(channels=1), pretrained=str(folder))
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match=r"data.image_size 15 does not fit .* set data.init_args.image_size to 16"):
        DDPM(facts(image_size=15), pretrained=str(folder))


def test_another_size_the_unet_can_halve_is_accepted_with_a_warning_and_recorded(tmp_path):
    folder = save_tiny_pipeline(tmp_path / "pipe")
    with pytest.warns(UserWarning, match=r"trained at 16×16 and is fine-tuned here at 8×8"):
        model = DDPM(facts(image_size=8), pretrained=str(folder), sampling_steps=2)
    assert model.unet.config.sample_size == 8  # a published pipeline samples at the fine-tuned size
    assert model.sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, 3, 8, 8)


def test_conditional_or_a_missing_folder_is_one_sentence(tmp_path):
    folder = save_tiny_pipeline(tmp_path / "pipe")
    with pytest.raises(UserError, match="set model.conditioning to none"):
        DDPM(DataFacts(image_size=16, channels=3, class_names=("a", "b")), conditioning="class", pretrained=str(folder))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="without unet/config.json"):
        DDPM(facts(), pretrained=str(tmp_path / "empty"))
    with pytest.raises(UserError, match="is not a folder here nor a Hub id"):
        DDPM(facts(), pretrained=str(tmp_path / "no" / "such" / "folder"))


def test_a_hub_id_is_read_from_the_cache_only_unless_downloads_are_allowed(monkeypatch, tmp_path):
    calls = []

    def no_file(*args, **kwargs):
        calls.append(kwargs["local_files_only"])
        raise OSError("not cached")

    monkeypatch.setattr(UNet2DModel, "load_config", no_file)
    monkeypatch.delenv(pretrained_module.ALLOW_DOWNLOADS, raising=False)
    with pytest.raises(UserError) as error:
        DDPM(facts(), pretrained="google/ddpm-cat-256")
    assert calls and all(calls)  # every look-up was local_files_only=True
    message = str(error.value)
    assert "not in the Hugging Face cache" in message and "hf download google/ddpm-cat-256" in message
    assert "LIGHTNING_GEN_ALLOW_DOWNLOADS=1" in message and "\n" not in message
    calls.clear()
    monkeypatch.setenv(pretrained_module.ALLOW_DOWNLOADS, "1")
    with pytest.raises(UserError, match="check the network"):
        DDPM(facts(), pretrained="google/ddpm-cat-256")
    assert calls and not any(calls)


def cache_as_hub_repo(folder: Path, cache: Path, repo_id: str) -> None:
    """``folder`` laid out as huggingface_hub's cache holds a downloaded model repo (refs/main → snapshots/<commit>)."""
    commit = "0" * 40
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


def test_a_cached_hub_id_loads_offline(monkeypatch, tmp_path):
    cache_as_hub_repo(save_tiny_pipeline(tmp_path / "pipe", prediction_type="v_prediction"), tmp_path / "hub", "someone/tiny-ddpm")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv(pretrained_module.ALLOW_DOWNLOADS, raising=False)
    model = DDPM(facts(), pretrained="someone/tiny-ddpm", prediction_type="epsilon")
    assert model.prediction_type == "v_prediction"
    assert torch.equal(model.unet.conv_in.weight, UNet2DModel.from_pretrained(tmp_path / "pipe", subfolder="unet").conv_in.weight)
