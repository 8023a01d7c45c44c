"""A 2-process CPU (gloo) DDP fit of LatentDiffusion: rank 0 encodes the training set once into the cache, both ranks
read that one file, draw their own latents, and take the step a single process computes from both ranks' batches."""

from __future__ import annotations

import pytest
import torch
import yaml
from fixtures_ddp import assert_one_run, ddp_config, launch, probes
from fixtures_latent import TINY_UNET, write_tiny_autoencoder

from lightning_gen.data import ShapesDataModule
from lightning_gen.models import LatentDiffusion

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LEARNING_RATE = 0.1


@pytest.mark.slow
def test_two_process_latent_diffusion_encodes_once_on_rank_zero_and_steps_as_one_process(tmp_path):
    autoencoder = write_tiny_autoencoder(tmp_path / "autoencoder" / "ae.ckpt")  # not beside the config: that would make it a run's
    cache = tmp_path / "latents"
    init_args = {
        "autoencoder": str(autoencoder), "conditioning": "class", "unet": TINY_UNET, "sampling_steps": 2, "validation_steps": 2,
        "latent_cache_dir": str(cache), "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": LEARNING_RATE}},
    }  # fmt: skip
    model = {"class_path": "lightning_gen.models.LatentDiffusion", "init_args": init_args}
    config = ddp_config(tmp_path, "latent", model)
    settings = yaml.safe_load(config.read_text())
    settings["trainer"]["callbacks"][0]["class_path"] = "ddp_probe.LatentProbe"
    settings["data"]["init_args"].update(hflip=False, max_rotation_degrees=0)  # latent configs flip in the latents
    config.write_text(yaml.safe_dump(settings))
    launch("fit", "--config", config, "--trainer.default_root_dir", tmp_path / "runs", cwd=tmp_path)
    assert_one_run(tmp_path / "runs", "latent")
    rank0, rank1 = probes(tmp_path, "latent")
    assert rank0["world_size"] == rank1["world_size"] == 2

    datamodule = ShapesDataModule(**settings["data"]["init_args"])
    datamodule.setup("fit")
    # Rank 0 ran the encoder once over the training set (each image and its mirror); rank 1 never; no step did.
    assert rank0["cache_encodes"] == 2 * len(datamodule.train_set) and rank1["cache_encodes"] == 0
    assert rank0["step_encodes"] == rank1["step_encodes"] == [0, 0]
    assert rank1["encoded_total"] > 0  # rank 1's counter does count: validation encodes its shard on the fly
    (cache_file,) = cache.glob("*.npy")  # one cache, written once, and it is the file both ranks read
    assert rank0["cache_file"] == rank1["cache_file"] == str(cache_file)
    assert sorted(path.name for path in cache.iterdir()) == sorted([cache_file.name, cache_file.with_suffix(".json").name])
    assert not torch.equal(rank0["draws"], rank1["draws"])  # per-rank randomness: the same rows, other latents
    assert not torch.equal(rank0["first_batch"]["index"], rank1["first_batch"]["index"])
    assert rank0["initial_weights"].keys() == rank0["final_weights"].keys()
    for held in ("final_weights", "ema"):
        assert rank0[held].keys() == rank1[held].keys()
        for key, value in rank0[held].items():
            other = rank1[held][key]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other, f"{held}/{key}"

    # One process, independently: each rank's first loss from its own batch and generator, then the SGD step on the
    # mean of the two gradients (what DDP's all-reduce gives) must be the weights both ranks hold after step 1.
    single = LatentDiffusion(datamodule.facts, **{**init_args, "optimizer": torch.optim.SGD})
    single.load_state_dict(rank0["initial_weights"])
    assert all(
        torch.equal(value, rank1["initial_weights"][key]) for key, value in rank0["initial_weights"].items() if torch.is_tensor(value)
    )
    single.train()
    single._posteriors = LatentDiffusion.load_latent_cache(cache_file)  # the cache rank 0 wrote, as both ranks read it
    trainable = [(name, p) for name, p in single.named_parameters() if p.requires_grad]
    gradients, losses = [], []
    for seen in (rank0, rank1):
        generator = torch.Generator().set_state(seen["generator_state"])  # that rank's training generator at step 0
        loss = single.diffusion_loss(seen["first_batch"], generator)
        losses.append(loss.item())
        gradients.append(torch.autograd.grad(loss, [p for _, p in trainable]))
    assert losses[0] == pytest.approx(rank0["first_loss"], rel=1e-5) and losses[1] == pytest.approx(rank1["first_loss"], rel=1e-5)
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)  # the ranks' batches and draws differ
    after = rank0["weights_after_first_step"]
    for (name, parameter), g0, g1 in zip(trainable, *gradients, strict=True):
        expected = parameter.detach() - LEARNING_RATE * (g0 + g1) / 2
        torch.testing.assert_close(after[name], expected, rtol=1e-5, atol=1e-6, msg=name)
        torch.testing.assert_close(rank1["weights_after_first_step"][name], after[name], rtol=0, atol=0, msg=name)
    one_rank_only = [(name, parameter.detach() - LEARNING_RATE * g0) for (name, parameter), g0 in zip(trainable, gradients[0])]
    assert any(not torch.allclose(after[name], value, rtol=1e-5, atol=1e-6) for name, value in one_rank_only)  # the check can fail
