"""Conditioner objects: both model families answer the protocol's condition questions alike; CVAE's renamed
setting still loads old checkpoints; its auxiliary loss draws per-rank noise, never from the global RNG."""

from __future__ import annotations

import pytest
import torch
from conftest import save_checkpoint

from lightning_gen.checkpoints.loading import load_model
from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts
from lightning_gen.models import CVAE, DDPM
from lightning_gen.models.conditioning import TextConditioner

FACTS = DataFacts(image_size=16, class_names=("red circle", "blue square", "green cross"), attribute_names=("red", "blue", "round"))
TINY_UNET = {"block_out_channels": [16, 32], "layers_per_block": 1}


def class_models():
    return [DDPM(FACTS, conditioning="class", unet=TINY_UNET), CVAE(FACTS, conditioning="class", channels=(8, 16), latent_dim=4)]


@pytest.mark.parametrize("model", class_models(), ids=["ddpm", "cvae"])
def test_class_names_honour_n_alike(model):
    assert model.condition_from_names(["blue square"], 3).tolist() == [1, 1, 1]
    assert model.condition_from_names(["green cross", "red circle", "blue square"], 3).tolist() == [2, 0, 1]
    assert model.condition_from_names(["green cross", "red circle"]).tolist() == [2, 0]  # n None: one per name
    assert model.condition_names(model.condition_from_names(["green cross"], 2)) == ["green cross", "green cross"]
    assert model.condition_from_prompt("a large blue square", 2).tolist() == [1, 1]
    assert model.spread_conditions(4).tolist() == [0, 1, 2, 0]
    assert model.condition_vocabulary == FACTS.class_names
    with pytest.raises(UserError, match="exactly one class name, or one per sample"):
        model.condition_from_names(["red circle", "blue square"], 3)
    with pytest.raises(UserError, match="Unknown class name 'purple'.*valid names are: red circle, blue square, green cross"):
        model.condition_from_names(["purple"], 1)


def test_attribute_names_make_one_multi_hot_row_per_sample():
    model = CVAE(FACTS, conditioning="attributes", channels=(8, 16), latent_dim=4)
    condition = model.condition_from_names(["round", "red"], 2)
    assert condition.tolist() == [[1.0, 0.0, 1.0], [1.0, 0.0, 1.0]]
    assert model.condition_names(condition) == ["red,round", "red,round"]
    assert model.spread_conditions(4).tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]]
    assert model.batch_condition({"attributes": condition}) is condition


def test_text_names_are_captions_for_n_samples():
    text = TextConditioner(FACTS, "DDPM", cache=None)
    assert text.from_names(["a red circle"], 3, "cpu") == ["a red circle"] * 3
    assert text.from_prompt("a blue square", 2, "cpu") == ["a blue square"] * 2
    assert text.from_names(["a", "b"], None, "cpu") == ["a", "b"]
    with pytest.raises(UserError, match="Got 2 conditions for 3 samples"):
        text.from_names(["a", "b"], 3, "cpu")
    assert text.grid_conditions({"caption": ["x", "y", "x"]}, "cpu") == ["x", "y"]


def test_an_unconditional_ddpm_refuses_names_and_has_no_vocabulary():
    model = DDPM(FACTS, conditioning="none", unet=TINY_UNET)
    assert model.condition_vocabulary == () and model.spread_conditions(3) is None and model.batch_condition({"label": 1}) is None
    with pytest.raises(UserError, match="DDPM here is unconditional"):
        model.condition_from_names(["red circle"], 1)


def test_a_checkpoint_written_with_the_old_condition_name_loads(tmp_path):
    torch.manual_seed(0)
    model = CVAE(FACTS, conditioning="attributes", channels=(8, 16), latent_dim=4).eval()
    assert "condition" not in model.hparams and model.hparams["conditioning"] == "attributes"
    path = save_checkpoint(model, tmp_path / "old.ckpt")
    checkpoint = torch.load(path, weights_only=False)
    hparams = checkpoint["hyper_parameters"]
    hparams["condition"] = hparams.pop("conditioning")  # as written before the rename
    torch.save(checkpoint, path)
    with pytest.warns(Warning, match="model.condition is now model.conditioning"):
        loaded = load_model(path)
    assert loaded.conditioning == "attributes" and "condition" not in loaded.hparams
    z = torch.randn(2, 4)
    condition = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    assert torch.equal(loaded.decode(z, condition), model.decode(z, condition))


def auxiliary_class_loss(monkeypatch, rank: int) -> tuple[float, float]:
    """(the auxiliary class loss, the VAE reconstruction term) of one training batch as DDP rank ``rank``."""
    monkeypatch.setattr("lightning_gen.models.base.process_rank", lambda: rank)
    torch.manual_seed(0)
    model = CVAE(FACTS, conditioning="class", channels=(8, 16), latent_dim=4, class_loss_weight=1.0)
    batch = {"image": torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1)), "label": torch.tensor([0, 1, 2, 0, 1, 2])}
    global_state = torch.get_rng_state()
    out = model.losses(batch, sample_latent=True)
    assert torch.equal(torch.get_rng_state(), global_state)  # nothing drawn from the global RNG every rank shares
    return out["class_loss"].item(), out["recon"].item()


def test_the_auxiliary_loss_draws_per_rank_noise_reproducibly(monkeypatch):
    first, again, other = (auxiliary_class_loss(monkeypatch, rank) for rank in (0, 0, 1))
    assert first == again  # a given rank (and batch) draws the same noise
    assert first[0] != other[0]  # another rank draws other prior samples and shuffles
