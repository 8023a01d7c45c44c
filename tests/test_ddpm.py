"""DDPM: noise schedule and loss, conditioning and guidance, sampling, the Imagen preset, a short fit."""

import lightning.pytorch as pl
import pytest
import torch

from lightning_gen.data.shapes import ShapesDataModule
from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts
from lightning_gen.models import DDPM
from lightning_gen.models.schedules import WarmupCosine
from lightning_gen.models.unets import build_unet, imagen_base_unet, unet_config
from lightning_gen.text.tiny_t5 import build_tiny_t5

FACTS = DataFacts(image_size=16, channels=3, class_names=("red circle", "blue square", "green cross"), has_captions=True)
TINY_UNET = {"block_out_channels": (16, 32), "layers_per_block": 1}
CAPTIONS = ["a large red circle", "a small blue square", "a large green cross", "a small red circle"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory) -> str:
    return str(build_tiny_t5(tmp_path_factory.mktemp("t5") / "tiny", CAPTIONS, d_model=16))


def class_model(**kwargs) -> DDPM:
    torch.manual_seed(0)
    return DDPM(FACTS, conditioning="class", unet=TINY_UNET, **kwargs)


def text_model(tiny_t5: str, cache_dir, **kwargs) -> DDPM:
    torch.manual_seed(0)
    return DDPM(
        FACTS,
        conditioning="text",
        unet=TINY_UNET,
        text_encoder=tiny_t5,
        text_cache_dir=str(cache_dir),
        max_text_length=8,
        sampling_steps=2,
        **kwargs,
    )


def make_batch(n: int = 4) -> dict:
    return {
        "image": torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(1)),
        "label": torch.arange(n) % 3,
        "caption": [CAPTIONS[i % len(CAPTIONS)] for i in range(n)],
    }


def unet_batch_sizes(model: DDPM) -> list[int]:
    sizes: list[int] = []
    model.unet.register_forward_hook(lambda module, args, output: sizes.append(len(args[0])))
    return sizes


def test_loss_is_the_v_prediction_mse_on_images_scaled_to_unit_range():
    model = class_model(min_snr_gamma=None, beta_schedule="linear")
    batch = make_batch()
    loss = model.diffusion_loss(batch, torch.Generator().manual_seed(3), drop=False)
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn(batch["image"].shape, generator=generator)
    timesteps = torch.randint(1000, (4,), generator=generator)
    clean = batch["image"] * 2 - 1
    alpha = torch.linspace(1e-4, 0.02, 1000).neg().add(1).cumprod(0)[timesteps].view(-1, 1, 1, 1)
    noisy = alpha.sqrt() * clean + (1 - alpha).sqrt() * noise
    velocity = alpha.sqrt() * noise - (1 - alpha).sqrt() * clean
    prediction = model.unet(noisy, timesteps, class_labels=batch["label"]).sample
    assert loss.item() == pytest.approx(((prediction - velocity) ** 2).mean().item(), rel=1e-4)


def test_min_snr_weights():
    model = class_model(min_snr_gamma=5.0, prediction_type="epsilon", beta_schedule="linear")
    alphas = model.noise_schedule.alphas_cumprod
    timesteps = torch.tensor([0, 999])
    snr = alphas[timesteps] / (1 - alphas[timesteps])
    assert snr[0] > 5 > snr[1]
    # ε: min(SNR, 5)/SNR = 5/SNR for the clean end, 1 for the noisy end.
    assert torch.allclose(model.loss_weights(timesteps), torch.stack([5 / snr[0], torch.tensor(1.0)]))
    model.prediction_type = "v_prediction"
    assert torch.allclose(model.loss_weights(timesteps), torch.stack([5 / (snr[0] + 1), snr[1] / (snr[1] + 1)]))


def test_class_model_trains_and_samples():
    model = class_model()
    loss = model.training_step(make_batch(), 0)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert model.unet.conv_in.weight.grad is not None
    for sampler in ("ddim", "ddpm"):
        images = model.sample(2, condition=torch.tensor([1]), steps=3, sampler=sampler)
        assert images.shape == (2, 3, 16, 16) and images.min() >= 0 and images.max() <= 1
    first = model.sample(2, torch.tensor([0, 2]), generator=torch.Generator().manual_seed(5), steps=3, sampler="ddpm")
    again = model.sample(2, torch.tensor([0, 2]), generator=torch.Generator().manual_seed(5), steps=3, sampler="ddpm")
    assert torch.equal(first, again)


def test_guidance_doubles_the_batch_only_when_it_matters():
    model = class_model(guidance_scale=3.0)
    sizes = unet_batch_sizes(model)
    model.sample(2, condition=torch.tensor([0, 1]), steps=2)
    model.sample(2, condition=torch.tensor([0, 1]), steps=2, guidance_scale=1.0)
    model.sample(2, condition=None, steps=2)
    assert sizes == [4, 4, 2, 2, 2, 2]


def test_dropped_conditions_become_the_learned_null(tiny_t5, tmp_path):
    model = class_model()
    dropped = torch.tensor([True, False, True])
    labels = model.drop_condition({"class_labels": torch.tensor([0, 1, 2])}, dropped)["class_labels"]
    assert labels.tolist() == [3, 1, 3]  # class 3 = the extra, learned null row
    text = text_model(tiny_t5, tmp_path)
    inputs = text.drop_condition(text.condition_inputs(CAPTIONS[:3], 3), dropped)
    assert torch.equal(inputs["encoder_hidden_states"][0], text.null_text_embedding)
    assert inputs["encoder_attention_mask"][0].all() and not inputs["encoder_attention_mask"][1].all()


def test_text_model_trains_and_samples(tiny_t5, tmp_path):
    model = text_model(tiny_t5, tmp_path)
    loss = model.training_step(make_batch(), 0)
    loss.backward()
    assert torch.isfinite(loss) and model.null_text_embedding.grad is not None
    images = model.sample(2, condition=model.condition_from_prompt("a large red circle"), steps=3)
    assert images.shape == (2, 3, 16, 16) and images.min() >= 0 and images.max() <= 1
    assert len(model.text_cache) == 4  # the batch's four captions; the prompt was one of them
    frames = model.denoising_progression(["a small red circle", "a large green cross"], num_frames=3)
    assert frames.shape == (2, 3, 3, 16, 16)


def test_validation_is_repeatable_and_leaves_the_global_rng_alone():
    model = class_model()
    batch = make_batch()
    torch.manual_seed(0)
    state = torch.get_rng_state()
    first = model.diffusion_loss(batch, torch.Generator().manual_seed(0), drop=False)
    model.validation_step(batch, 0)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, model.diffusion_loss(batch, torch.Generator().manual_seed(0), drop=False))


def test_condition_names():
    model = class_model()
    assert model.condition_from_names(["blue square", "red circle"]).tolist() == [1, 0]
    assert model.condition_names(torch.tensor([2])) == ["green cross"]
    with pytest.raises(UserError, match="valid names are: red circle, blue square, green cross"):
        model.condition_from_names(["purple cat"])
    with pytest.raises(UserError, match="no class names"):
        DDPM(DataFacts(image_size=16), conditioning="class", unet=TINY_UNET)


def test_hyperparameters_rebuild_the_model():
    model = class_model()
    rebuilt = DDPM(**dict(model.hparams))
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.data_facts == FACTS


def test_bad_unet_settings_are_user_errors():
    with pytest.raises(UserError, match="one block type per level"):
        unet_config("class", {**TINY_UNET, "down_block_types": ["DownBlock2D"]}, 16, 3, 3)
    with pytest.raises(UserError, match="come from the data"):
        unet_config("class", {"sample_size": 32}, 16, 3, 3)
    with pytest.raises(UserError, match="only the text"):
        unet_config("class", {**TINY_UNET, "layers_per_block": [1, 2]}, 16, 3, 3)
    with pytest.raises(UserError, match="sampling_steps"):
        class_model(sampling_steps=0)


def test_imagen_base_preset_structure():
    config = unet_config("text", imagen_base_unet(), image_size=64, channels=3, cross_attention_dim=1024)
    with torch.device("meta"):  # the structure without allocating a billion parameters
        unet = build_unet("text", config)
    assert [len(block.resnets) for block in unet.down_blocks] == [2, 4, 8, 8]
    assert [hasattr(block, "attentions") for block in unet.down_blocks] == [False, False, False, True]
    assert [hasattr(block, "attentions") for block in unet.up_blocks] == [True, False, False, False]
    assert [block.resnets[0].out_channels for block in unet.down_blocks] == [128, 256, 512, 1024]
    assert unet.mid_block.attentions[0].transformer_blocks[0].attn2.heads == 8


def test_warmup_cosine_schedule():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = WarmupCosine(optimizer, warmup_steps=4, total_steps=12, min_lr_ratio=0.1)
    rates = []
    for _ in range(14):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [0.25, 0.5, 0.75, 1.0, 1.0] + [None] * 3 + [0.55] + [None] * 3 + [0.1, 0.1]
    for step, value in enumerate(expected):
        if value is not None:
            assert rates[step] == pytest.approx(value), step
    resumed = WarmupCosine(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), 4, 12, 0.1)
    resumed.load_state_dict(scheduler.state_dict())
    assert resumed.get_last_lr() == scheduler.get_last_lr()
    with pytest.raises(UserError):
        WarmupCosine(optimizer, warmup_steps=20, total_steps=10)


def test_short_fit_on_shapes():
    data = ShapesDataModule(num_images=64, image_size=16, batch_size=8)
    model = DDPM(data.facts, conditioning="class", unet=TINY_UNET, sampling_steps=3)
    trainer = pl.Trainer(
        max_steps=3,
        log_every_n_steps=1,  # step scalars are logged on Lightning's logging steps only
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        val_check_interval=3,
        limit_val_batches=1,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=data)
    assert trainer.global_step == 3
    assert torch.isfinite(trainer.callback_metrics["train/loss"]) and torch.isfinite(trainer.callback_metrics["val/loss"])
    images = model.sample(2, model.condition_from_names(["red circle"]), steps=3)
    assert images.shape == (2, 3, 16, 16)
