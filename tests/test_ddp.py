"""DDP on CPU (gloo), 2 processes started by Lightning's launcher (and by torchrun): one run directory and
run id, per-rank randomness, validation metrics over the whole set, identical EMA weights, resume."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path

import pytest
import safetensors.torch
import torch
import yaml
from conftest import TINY_CONFIG, save_checkpoint
from fixtures_ddp import assert_one_run, ddp_config, launch, probes
from torchmetrics.image import PeakSignalNoiseRatio

from lightning_gen.checkpoints.loading import load_model
from lightning_gen.data import ShapesDataModule
from lightning_gen.models.denoising_prior import DenoisingDensity
from lightning_gen.runs.agreement import ENV_KEY, agreed_run_location
from lightning_gen.runs.directory import RunLocation

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def full_validation_set(config_path: Path) -> dict:
    datamodule = ShapesDataModule(**yaml.safe_load(config_path.read_text())["data"]["init_args"])
    datamodule.setup("fit")
    return datamodule.val_set.__getitems__(list(range(len(datamodule.val_set))))


def test_two_process_vae_one_run_per_rank_noise_synced_metrics_identical_ema(tmp_path):
    model = copy.deepcopy(TINY_CONFIG["model"])
    model["init_args"]["batchnorm"] = True  # buffers that each rank updates from its own batches
    config = ddp_config(tmp_path, "vae", model)
    launch("fit", "--config", config, "--trainer.default_root_dir", tmp_path / "runs", "--tracking.logger", "wandb", cwd=tmp_path)

    run = assert_one_run(tmp_path / "runs", "vae")
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    run_id = checkpoint["lightning_gen"]["run_id"]
    assert [path.name.rsplit("-", 1)[-1] for path in (run / "wandb").glob("offline-run-*")] == [run_id]

    rank0, rank1 = probes(tmp_path, "vae")
    assert rank0["world_size"] == rank1["world_size"] == 2
    assert not torch.equal(rank0["first_batch_index"], rank1["first_batch_index"])  # each rank its own shard
    # ... of the order data.seed fixes (defect 6: Lightning's own sampler followed seed_everything instead).
    init_args = yaml.safe_load(config.read_text())["data"]["init_args"]
    datamodule = ShapesDataModule(**init_args)
    datamodule.setup("fit")
    order = torch.randperm(len(datamodule.train_set), generator=torch.Generator().manual_seed(init_args.get("seed", 0) * 1_000_003))
    for rank, seen in enumerate((rank0, rank1)):
        positions = order[rank::2][: len(seen["first_batch_index"])].tolist()
        assert seen["first_batch_index"].tolist() == datamodule.train_set.__getitems__(positions)["index"].tolist()
    assert not torch.equal(rank0["training_noise"], rank1["training_noise"])
    assert not torch.equal(rank0["augmentation"], rank1["augmentation"])
    for key, value in rank0["ema"].items():
        assert torch.equal(value, rank1["ema"][key]), key

    # The logged val/psnr and val/loss are those of the whole validation set, on both ranks.
    assert rank0["metrics"] == rank1["metrics"]
    vae = load_model(run / "checkpoints" / "last.ckpt")
    batch = full_validation_set(config)
    with torch.no_grad():
        psnr = PeakSignalNoiseRatio(data_range=1.0)(vae.reconstruct(batch["image"]), batch["image"])
        loss = vae.losses(batch, sample_latent=False)["loss"]
        first_shard = PeakSignalNoiseRatio(data_range=1.0)(vae.reconstruct(batch["image"][::2]), batch["image"][::2])
    assert rank0["metrics"]["val/psnr"] == pytest.approx(float(psnr), rel=1e-5)
    assert rank0["metrics"]["val/loss"] == pytest.approx(float(loss), rel=1e-5)
    assert float(first_shard) != pytest.approx(float(psnr), rel=1e-5)  # what an unsynced rank 0 would log


@pytest.mark.slow
def test_ema_batchnorm_statistics_are_identical_without_a_validation_after_the_last_step(tmp_path):
    # DDP's forward broadcasts rank 0's buffers, so a validation pass (EMA weights swapped in) hides a
    # drift of the averaged BatchNorm statistics; without one, only the EMA callback's own sync does.
    model = copy.deepcopy(TINY_CONFIG["model"])
    model["init_args"]["batchnorm"] = True
    config = ddp_config(tmp_path, "bn", model, limit_val_batches=0, num_sanity_val_steps=0)
    launch("fit", "--config", config, "--trainer.default_root_dir", tmp_path / "runs", cwd=tmp_path)
    rank0, rank1 = probes(tmp_path, "bn")
    assert any("running_mean" in key for key in rank0["ema"])
    for key, value in rank0["ema"].items():
        assert torch.equal(value, rank1["ema"][key]), key


TINY_UNET = {"block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8}


def ddpm_model(conditioning: str, **extra: object) -> dict:
    init_args = {"conditioning": conditioning, "unet": TINY_UNET, "sampling_steps": 2, "validation_steps": 2, **extra}
    return {"class_path": "lightning_gen.models.DDPM", "init_args": init_args}


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory) -> str:
    from lightning_gen.text.tiny_t5 import build_tiny_t5, shapes_captions

    return str(build_tiny_t5(tmp_path_factory.mktemp("t5") / "tiny_t5", shapes_captions(), d_model=16))


@pytest.fixture(scope="module")
def judge_ckpt(tmp_path_factory) -> Path:
    from lightning_gen.models import Judge

    judge = Judge(ShapesDataModule(image_size=16).facts, channels=(8, 16), hidden=8)
    return save_checkpoint(judge, tmp_path_factory.mktemp("judge") / "judge.ckpt")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cvae", "ddpm_class", "ddpm_text"])
def test_two_process_fit_of_each_model(kind, tmp_path, request):
    if kind == "cvae":
        model = {"class_path": "lightning_gen.models.CVAE", "init_args": {"conditioning": "class", "channels": [8, 16], "latent_dim": 4}}
    elif kind == "ddpm_class":
        model = ddpm_model("class")
    else:
        cache = tmp_path / "text_cache"
        model = ddpm_model("text", text_encoder=request.getfixturevalue("tiny_t5"), max_text_length=8, text_cache_dir=str(cache))
    config = ddp_config(tmp_path, kind, model)
    if kind == "ddpm_class":  # a sampling callback: each rank samples its share, every rank logs the same score
        settings = yaml.safe_load(config.read_text())
        settings["trainer"]["callbacks"].append(
            {
                "class_path": "lightning_gen.callbacks.judge_score.JudgeScore",
                "init_args": {"judge_ckpt": str(request.getfixturevalue("judge_ckpt")), "num_samples": 5},
            }
        )
        config.write_text(yaml.safe_dump(settings))
    launch("fit", "--config", config, "--trainer.default_root_dir", tmp_path / "runs", cwd=tmp_path)
    run = assert_one_run(tmp_path / "runs", kind)
    rank0, rank1 = probes(tmp_path, kind)
    assert rank0["metrics"] == rank1["metrics"] and "val/loss" in rank0["metrics"]
    assert not torch.equal(rank0["training_noise"], rank1["training_noise"])
    for key, value in rank0["ema"].items():
        assert torch.equal(value, rank1["ema"][key]), key
    if kind == "ddpm_class":
        assert "val/judge_overall" in rank0["metrics"]
    if kind.startswith("ddpm"):
        # Validation noise is seeded by image index, so the 2-process loss is the whole set's loss.
        model = load_model(run / "checkpoints" / "last.ckpt")
        batch = full_validation_set(config)
        with torch.no_grad():
            loss = model.diffusion_loss(batch, drop=False, draws=model.evaluation_draws(batch))
        assert rank0["metrics"]["val/loss"] == pytest.approx(float(loss), rel=1e-4)
    if kind == "ddpm_text":
        (cache_file,) = cache.glob("*.safetensors")  # rank 0 wrote it; no temporary is left beside it
        assert sorted(path.name for path in cache.iterdir()) == [cache_file.name]
        # Every caption the 80 shapes serve (37 distinct; both ranks' shares, gathered), an embedding and a mask each.
        assert len(safetensors.torch.load_file(cache_file)) == 2 * 37


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_to_the_uninterrupted_result(tmp_path):
    config = ddp_config(tmp_path, "resume", max_epochs=2)  # 2 steps per epoch and rank
    every = ["--checkpointing.every_n_steps", "1"]
    launch("fit", "--config", config, "--trainer.default_root_dir", tmp_path / "straight", *every, cwd=tmp_path)
    kill = '{"class_path": "conftest.KillAtStep", "init_args": {"step": 3}}'
    with pytest.raises(AssertionError, match="killed at step 3"):
        launch(
            "fit", "--config", config, "--trainer.default_root_dir", tmp_path / "split", "--trainer.callbacks+", kill, *every, cwd=tmp_path
        )
    assert torch.load(tmp_path / "split/resume/version_0/checkpoints/last.ckpt", weights_only=False)["global_step"] == 3
    launch("fit", "--config", config, "--trainer.default_root_dir", tmp_path / "split", "--ckpt_path", "last", *every, cwd=tmp_path)
    assert_one_run(tmp_path / "split", "resume")
    straight = torch.load(tmp_path / "straight/resume/version_0/checkpoints/last.ckpt", weights_only=False)
    resumed = torch.load(tmp_path / "split/resume/version_0/checkpoints/last.ckpt", weights_only=False)
    assert straight["global_step"] == resumed["global_step"] == 4
    for key in ("state_dict", "current_model_state"):
        for name, value in straight[key].items():
            assert torch.equal(value, resumed[key][name]), f"{key}/{name}"


@pytest.mark.slow
def test_torchrun_ranks_share_one_run(tmp_path):
    config = ddp_config(tmp_path, "torchrun")
    launch("fit", "--config", config, "--trainer.default_root_dir", tmp_path / "runs", cwd=tmp_path, torchrun=True)
    assert_one_run(tmp_path / "runs", "torchrun")
    rank0, rank1 = probes(tmp_path, "torchrun")
    assert rank0["world_size"] == 2 and rank0["metrics"] == rank1["metrics"]


# -- the agreement on the run location, without training -----------------------------------------
def location(name: str) -> tuple[RunLocation, str | None]:
    return RunLocation(Path("runs"), "exp", Path("runs/exp") / name, run_id=name), None


def never() -> tuple[RunLocation, str | None]:
    raise AssertionError("only rank 0 decides")


def clear_launch_env(monkeypatch) -> None:
    for key in (
        "RANK",
        "LOCAL_RANK",
        "NODE_RANK",
        "GROUP_RANK",
        "SLURM_PROCID",
        "SLURM_NTASKS",
        "SLURM_JOB_ID",
        "TORCHELASTIC_USE_AGENT_STORE",
        "MASTER_ADDR",
        "MASTER_PORT",
        ENV_KEY,
    ):
        monkeypatch.delenv(key, raising=False)


def test_lightning_launcher_children_adopt_rank_zeros_choice(monkeypatch, tmp_path):
    clear_launch_env(monkeypatch)
    assert agreed_run_location(lambda: location("version_3"), tmp_path)[0].run_id == "version_3"
    monkeypatch.setenv("LOCAL_RANK", "1")  # what the launcher sets in a child, beside the inherited environment
    assert agreed_run_location(never, tmp_path)[0].directory == Path("runs/exp/version_3")
    monkeypatch.setenv("LOCAL_RANK", "0")  # a later run in the same process decides again
    assert agreed_run_location(lambda: location("version_4"), tmp_path)[0].run_id == "version_4"


def test_srun_ranks_agree_through_a_file_named_after_the_job(monkeypatch, tmp_path):
    clear_launch_env(monkeypatch)
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert agreed_run_location(lambda: location("version_5"), tmp_path)[0].run_id == "version_5"
    monkeypatch.setenv("SLURM_PROCID", "1")
    assert agreed_run_location(never, tmp_path)[0].run_id == "version_5"


def test_torchrun_ranks_agree_through_the_agent_store(monkeypatch, tmp_path):
    from torch.distributed import TCPStore

    clear_launch_env(monkeypatch)
    agent = TCPStore("127.0.0.1", 0, is_master=True, timeout=timedelta(seconds=10))  # what torchrun's agent serves
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(agent.port))
    monkeypatch.setenv("RANK", "0")
    assert agreed_run_location(lambda: location("version_6"), tmp_path)[0].run_id == "version_6"
    monkeypatch.setenv("RANK", "1")
    assert agreed_run_location(never, tmp_path)[0].run_id == "version_6"


def test_training_noise_differs_by_rank_and_repeats_by_seed(monkeypatch):
    import lightning_gen.models.base as base
    from lightning_gen.models import VAE

    model = VAE(ShapesDataModule(image_size=16).facts, channels=(8,), latent_dim=2)
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    draws = {}
    for rank in (0, 1, 0):
        monkeypatch.setattr(base, "process_rank", lambda rank=rank: rank)
        draws.setdefault(rank, []).append(torch.randn(4, generator=model.training_generator()))
    assert torch.equal(draws[0][0], draws[0][1]) and not torch.equal(draws[0][0], draws[1][0])
    monkeypatch.setenv("PL_GLOBAL_SEED", "8")
    assert not torch.equal(torch.randn(4, generator=model.training_generator()), draws[0][0])


def test_a_requeued_slurm_job_continues_its_own_run(monkeypatch, tiny_config, tmp_path):
    from conftest import run_cli

    clear_launch_env(monkeypatch)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    runs = tmp_path / "runs"
    run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", runs, "--trainer.max_epochs", "1")
    monkeypatch.setenv("SLURM_JOB_ID", "5000")  # another job's run, newer
    run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", runs, "--trainer.max_epochs", "1")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # what SLURM sets when Lightning's auto-requeue starts the job again
    run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", runs, "--trainer.max_epochs", "2")
    assert sorted(path.name for path in (runs / "tiny").iterdir() if not path.name.startswith(".")) == ["version_0", "version_1"]
    assert torch.load(runs / "tiny/version_0/checkpoints/last.ckpt", weights_only=False)["global_step"] == 2 * 5
    assert torch.load(runs / "tiny/version_1/checkpoints/last.ckpt", weights_only=False)["global_step"] == 5


def test_ema_refuses_a_sharded_strategy():
    from types import SimpleNamespace

    from lightning.pytorch.strategies import FSDPStrategy

    from lightning_gen.callbacks.ema import EMA
    from lightning_gen.errors import UserError

    with pytest.raises(UserError, match="ema.enabled false"):
        EMA().setup(SimpleNamespace(strategy=FSDPStrategy()), torch.nn.Linear(1, 1), "fit")


@pytest.mark.slow
def test_two_process_diffusion_prior_is_fitted_on_both_ranks_codes_and_is_the_same_on_each(tmp_path):
    """``prior: diffusion`` under DDP: every rank fits its denoiser on the codes of both ranks' kept images (gathered,
    rank 0's first), seed 0, no collective inside the fit; so both ranks hold the one prior the checkpoint keeps,
    equal to a fit here on the gathered codes, and unlike one on rank 0's codes alone."""
    model = copy.deepcopy(TINY_CONFIG["model"])
    model["init_args"].update({"prior": "diffusion", "prior_fit_steps": 20, "prior_width": 8})
    config = ddp_config(tmp_path, "prior", model)
    settings = yaml.safe_load(config.read_text())
    settings["trainer"]["callbacks"][0]["class_path"] = "ddp_probe.PriorProbe"
    config.write_text(yaml.safe_dump(settings))
    launch("fit", "--config", config, "--trainer.default_root_dir", tmp_path / "runs", cwd=tmp_path)
    run = assert_one_run(tmp_path / "runs", "prior")
    rank0, rank1 = (probe["fits"] for probe in probes(tmp_path, "prior"))
    assert len(rank0) == len(rank1) >= 1
    first0, first1 = rank0[0], rank1[0]
    assert first0["kept"].shape == first1["kept"].shape and not torch.equal(first0["kept"], first1["kept"])
    for fit0, fit1 in zip(rank0, rank1):
        assert fit0["prior"]["fitted"] and fit0["prior"].keys() == fit1["prior"].keys()
        for key, value in fit0["prior"].items():
            assert key == "fitted" or torch.equal(value, fit1["prior"][key]), key
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    saved = saved["latent_prior._extra_state"]
    assert all(torch.equal(saved[key], rank0[-1]["prior"][key]) for key in saved if key != "fitted")

    # The first fit again, here: the validated weights encode each rank's kept images; rank 0's codes first.
    vae = load_model(run / "checkpoints" / "last.ckpt")
    vae.load_state_dict(first0["weights"], strict=False)
    with torch.no_grad():
        codes = [vae.encode(fit["kept"]) for fit in (first0, first1)]

    def fitted_on(codes: torch.Tensor) -> dict:
        density = DenoisingDensity(8, fit_steps=20, width=8)
        density.fit(codes, seed=0)
        return density.get_extra_state()

    both, alone = fitted_on(torch.cat(codes)), fitted_on(codes[0])
    for key, value in first0["prior"].items():
        if key != "fitted":
            assert torch.allclose(value, both[key], rtol=1e-4, atol=1e-5), key
    assert not torch.allclose(first0["prior"]["code_mean"], alone["code_mean"], atol=1e-4)  # what an ungathered rank fits
