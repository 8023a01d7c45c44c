import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from lightning_gen.facts import DataFacts
from lightning_gen.models import VAE, BetaVAE
from lightning_gen.models.losses import gaussian_kl, reconstruction_loss


@pytest.mark.parametrize("upsampling", ["transpose", "upsample"])
@pytest.mark.parametrize("image_size,channels", [(16, [8, 16]), (32, [8, 16, 32])])
def test_shapes_of_encode_decode_sample(upsampling, image_size, channels):
    model = VAE(DataFacts(image_size=image_size), channels=channels, latent_dim=5, decoder_dense=[12], upsampling=upsampling)
    x = torch.rand(3, 3, image_size, image_size)
    assert model.encode(x).shape == (3, 5)
    recon = model.reconstruct(x)
    assert recon.shape == x.shape and recon.min() >= 0 and recon.max() <= 1
    assert model.sample(4).shape == (4, 3, image_size, image_size)


def test_kl_matches_closed_form_and_torch_distributions():
    mean, log_var = torch.randn(4, 6), torch.randn(4, 6)
    expected = kl_divergence(Normal(mean, (0.5 * log_var).exp()), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(gaussian_kl(mean, log_var), expected)
    # One dimension by hand: mean 1, variance e → 0.5 * (1 + e - 1 - 1).
    assert gaussian_kl(torch.tensor([[1.0]]), torch.tensor([[1.0]])).item() == pytest.approx(0.5 * (math.e - 1))


def test_reconstruction_losses_by_hand():
    logits = torch.zeros(1, 1, 1, 2)  # sigmoid → 0.5 everywhere
    target = torch.tensor([[[[1.0, 0.0]]]])
    assert reconstruction_loss(logits, target, "mse").item() == pytest.approx(0.25 + 0.25)
    assert reconstruction_loss(logits, target, "bce").item() == pytest.approx(2 * math.log(2))


def test_total_loss_is_weighted_sum_with_hand_computed_terms():
    torch.manual_seed(0)
    model = VAE(DataFacts(image_size=16), channels=[4, 8], latent_dim=3, recon_weight=0.5, kl_weight=0.25)
    batch = {"image": torch.rand(2, 3, 16, 16)}
    out = model.losses(batch, sample_latent=False)
    mean, log_var = model.posterior(batch["image"])
    recon = ((model.decode(mean) - batch["image"]) ** 2).flatten(1).sum(1).mean()
    kl = (0.5 * (mean**2 + log_var.exp() - log_var - 1)).sum(1).mean()
    torch.testing.assert_close(out["recon"], recon)
    torch.testing.assert_close(out["kl"], kl)
    torch.testing.assert_close(out["loss"], 0.5 * recon + 0.25 * kl)


def test_kl_warmup_ramps_beta(one_torch_thread):
    import lightning.pytorch as pl

    from lightning_gen.data import ShapesDataModule

    class RecordBeta(pl.Callback):
        def __init__(self):
            self.betas: list[float] = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.betas.append(pl_module.current_kl_weight())

    model = VAE(DataFacts(image_size=16), channels=[4, 8], latent_dim=2, kl_weight=2.0, kl_warmup_steps=10)
    assert model.current_kl_weight() == 0.0  # global_step is 0 outside a trainer
    record = RecordBeta()
    trainer = pl.Trainer(max_steps=14, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, callbacks=[record])  # fmt: skip
    trainer.fit(model, ShapesDataModule(num_images=40, image_size=16, batch_size=8))
    # β_t = 2 · min(1, t / 10) at step t: a linear ramp over the first 10 steps, then flat.
    assert record.betas == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.0, 2.0, 2.0])


def test_beta_vae_is_the_vae_with_beta():
    model = BetaVAE(DataFacts(image_size=16), channels=[4, 8])
    assert isinstance(model, VAE) and model.kl_weight == 4.0
    assert BetaVAE(DataFacts(image_size=16), channels=[4, 8], kl_weight=0.005).kl_weight == 0.005


def test_image_size_not_divisible_is_a_clear_error():
    from lightning_gen.errors import UserError

    with pytest.raises(UserError, match="not divisible by 8"):
        VAE(DataFacts(image_size=20), channels=[4, 8, 16])
