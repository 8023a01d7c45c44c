"""The ``performance`` group: torch.compile and channels_last of the networks, float32 matmul precision."""

from __future__ import annotations

import io
import shutil

import pytest
import torch

from lightning_gen.callbacks.performance import PerformanceOptions, apply_matmul_precision, performance_callbacks, trainable_networks
from lightning_gen.config.settings import PerformanceSettings
from lightning_gen.facts import DataFacts
from lightning_gen.models import VAE


def tiny_vae() -> VAE:
    torch.manual_seed(0)
    return VAE(DataFacts(image_size=16), channels=[4, 8], latent_dim=3).eval()


def fixed_batch() -> dict[str, torch.Tensor]:
    return {"image": torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))}


def test_the_networks_are_the_trainable_children_metrics_aside():
    model = tiny_vae()
    networks = trainable_networks(model)
    assert {"encoder", "encoder_head", "decoder"} <= set(networks)
    assert "psnr" not in networks and "ssim" not in networks
    model.decoder.requires_grad_(False)  # a frozen network (a T5 encoder) is left alone
    assert "decoder" not in trainable_networks(model)


def test_nothing_is_added_by_default():
    assert performance_callbacks(PerformanceSettings()) == []
    assert isinstance(performance_callbacks(PerformanceSettings(compile=True))[0], PerformanceOptions)


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="inductor on CPU needs a C compiler")
def test_compiled_and_eager_losses_equal_and_checkpoint_keys_stay_eager():
    eager = tiny_vae()
    with torch.no_grad():
        expected = eager.losses(fixed_batch(), sample_latent=False)["loss"]
    compiled = tiny_vae()
    PerformanceOptions(compile=True).setup(None, compiled, "fit")
    with torch.no_grad():
        loss = compiled.losses(fixed_batch(), sample_latent=False)["loss"]
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    assert list(compiled.state_dict()) == list(eager.state_dict())  # no _orig_mod.: loads without compile
    tiny_vae().load_state_dict(compiled.state_dict())


def test_graph_breaks_of_the_vae_networks():
    model = tiny_vae()
    x = fixed_batch()["image"]
    # Measured: the conv encoder and decoder trace as one graph each (a new break would cost speed under compile).
    assert torch._dynamo.explain(model.encoder)(x).graph_break_count == 0
    features = model.encoder(x)
    z = model.encoder_head(features)[:, :3]
    assert torch._dynamo.explain(model.decode_logits)(z).graph_break_count == 0


def test_a_channels_last_models_checkpoint_loads_into_an_eager_one_with_equal_outputs():
    fast = tiny_vae()
    options = PerformanceOptions(channels_last=True)
    options.setup(None, fast, "fit")
    conv = next(module for module in fast.encoder.modules() if isinstance(module, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    batch = fixed_batch()
    options.on_train_batch_start(None, fast, batch, 0)
    assert batch["image"].is_contiguous(memory_format=torch.channels_last)
    buffer = io.BytesIO()
    torch.save(fast.state_dict(), buffer)
    buffer.seek(0)
    eager = VAE(DataFacts(image_size=16), channels=[4, 8], latent_dim=3).eval()
    eager.load_state_dict(torch.load(buffer, weights_only=True))
    with torch.no_grad():
        torch.testing.assert_close(
            fast.losses(batch, sample_latent=False)["logits"], eager.losses(fixed_batch(), sample_latent=False)["logits"]
        )


def test_matmul_precision_is_set_for_the_process():
    before = torch.get_float32_matmul_precision()
    try:
        apply_matmul_precision(PerformanceSettings(matmul_precision="high"))
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 autocast with channels_last convolutions runs on a CUDA GPU")
def test_channels_last_bf16_on_cuda_matches_eager_fp32_loosely():
    eager = tiny_vae().cuda()
    fast = tiny_vae().cuda()
    PerformanceOptions(channels_last=True).setup(None, fast, "fit")
    batch = {"image": fixed_batch()["image"].cuda()}
    with torch.no_grad():
        expected = eager.losses(batch, sample_latent=False)["loss"]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fast.losses({"image": batch["image"].contiguous(memory_format=torch.channels_last)}, sample_latent=False)["loss"]
    torch.testing.assert_close(loss.float(), expected, rtol=2e-2, atol=2e-2)
