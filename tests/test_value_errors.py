"""Values a user can get wrong end in one sentence (exit 2), not a traceback: sizes, the learning rate, memory, the runs folder."""

from __future__ import annotations

import errno
import os
import pathlib
from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from conftest import TINY_CONFIG, run_cli, write_vae_run
from jsonargparse import ArgumentParser

import lightning_gen.data as data_modules
from lightning_gen.data import ShapesDataModule
from lightning_gen.errors import UserError
from lightning_gen.models import CVAE, VAE, BetaVAE

# torch's own messages for an allocation that failed (CPU: c10's DefaultCPUAllocator; GPU: the caching allocator).
CPU_OOM = (
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to allocate "
    "13421772800 bytes. Error code 12 (Cannot allocate memory)"
)
GPU_OOM = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.54 GiB of which 1.12 GiB is free. "
    "Of the allocated memory 20.1 GiB is allocated by PyTorch, and 1.3 GiB is reserved by PyTorch but unallocated."
)


def one_sentence_error(capsys, *args) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        run_cli(*args)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2, err[-3000:]
    lines = err.splitlines()
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in err, err[-3000:]
    assert lines[-1].count(". ") == 0 and lines[-1].endswith("."), lines[-1]
    return lines[-1]


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("--data.init_args.batch_size", "0", "--data.init_args.batch_size 0 is not valid: expected a positive whole number."),
        ("--data.init_args.batch_size", "-4", "--data.init_args.batch_size -4 is not valid: expected a positive whole number."),
        ("--data.init_args.num_images", "0", "--data.init_args.num_images 0 is not valid: expected a positive whole number."),
        ("--data.init_args.image_size", "0", "--data.init_args.image_size 0 is not valid: expected a positive whole number."),
        ("--data.init_args.num_workers", "-1", "--data.init_args.num_workers -1 is not valid: expected a whole number of 0 or more."),
        ("--model.init_args.latent_dim", "0", "--model.init_args.latent_dim 0 is not valid: expected a positive whole number."),
        ("--model.init_args.latent_dim", "-3", "--model.init_args.latent_dim -3 is not valid: expected a positive whole number."),
    ],
)
def test_a_size_below_one_is_refused_before_the_run_starts(option, value, expected, tiny_config, tmp_path, capsys):
    line = one_sentence_error(capsys, "fit", "--config", tiny_config, option, value, "--trainer.default_root_dir", tmp_path / "runs")
    assert line.endswith(expected), line
    assert not (tmp_path / "runs").exists()  # refused while parsing: no run directory was made


def test_a_size_in_the_config_file_is_named_by_its_key(tmp_path, capsys):
    config = tmp_path / "zero.yaml"
    config.write_text(
        yaml.safe_dump({**TINY_CONFIG, "data": {**TINY_CONFIG["data"], "init_args": {**TINY_CONFIG["data"]["init_args"], "batch_size": 0}}})
    )
    line = one_sentence_error(capsys, "fit", "--config", config, "--trainer.default_root_dir", tmp_path / "runs")
    assert "--data.init_args.batch_size 0 is not valid: expected a positive whole number" in line


def test_every_command_refuses_a_zero_batch_size_of_its_data(tiny_config, capsys):
    line = one_sentence_error(capsys, "stats", "--config", tiny_config, "--data.init_args.batch_size", "0")
    assert "--data.init_args.batch_size 0 is not valid" in line


SHIPPED_DATAMODULES = [getattr(data_modules, name) for name in data_modules.__all__ if name != "GenerativeDataModule"]


@pytest.mark.parametrize("cls", SHIPPED_DATAMODULES, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("key", ["batch_size", "image_size", "num_images"])
def test_every_shipped_datamodule_refuses_sizes_below_one_while_parsing(cls, key):
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(pl.LightningDataModule, "data")
    required = {"root": "/nowhere", "path": "/nowhere"}
    init_args = {name: value for name, value in required.items() if name in cls.__init__.__code__.co_varnames}
    accepted = parser.get_defaults()
    probe = {"class_path": f"{cls.__module__}.{cls.__name__}", "init_args": init_args}
    try:
        parser.parse_object({"data": {**probe, "init_args": {**init_args, key: 3}}}, accepted)
    except Exception:
        assert key == "num_images", (cls, key)  # only the rendered dataset has a number of images
        return
    with pytest.raises(Exception, match="PositiveInt"):
        parser.parse_object({"data": {**probe, "init_args": {**init_args, key: 0}}}, accepted)


def test_a_datamodule_built_in_python_refuses_zero_too_and_keeps_plain_ints():
    with pytest.raises(UserError, match=r"data\.batch_size must be a positive whole number, got 0"):
        ShapesDataModule(batch_size=0)
    with pytest.raises(UserError, match=r"data\.num_images must be a positive whole number, got -1"):
        ShapesDataModule(num_images=-1)
    with pytest.raises(UserError, match=r"data\.image_size must be a positive whole number, got 0"):
        ShapesDataModule(image_size=0)


@pytest.mark.parametrize("cls", [VAE, BetaVAE, CVAE])
def test_a_model_refuses_latent_dim_zero_in_python_and_on_the_command_line(cls):
    facts = ShapesDataModule(image_size=16).facts
    with pytest.raises(UserError, match=r"model\.latent_dim must be a positive whole number, got 0"):
        cls(facts, channels=(8,), latent_dim=0)
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(pl.LightningModule, "model", fail_untyped=False)
    with pytest.raises(Exception, match="PositiveInt"):
        parser.parse_object({"model": {"class_path": f"{cls.__module__}.{cls.__name__}", "init_args": {"latent_dim": 0}}})


def test_parsed_sizes_reach_the_classes_as_plain_ints(tiny_config, tmp_path, monkeypatch):
    """jsonargparse hands a PositiveInt over as a PositiveInt; a weights-only checkpoint can hold only plain ints."""
    from lightning_gen.cli import GenerativeCLI

    monkeypatch.setattr("sys.argv", ["lightning-gen"])
    cli = GenerativeCLI(args=["--config", str(tiny_config), "--trainer.default_root_dir", str(tmp_path / "runs")], run=False)
    assert type(cli.datamodule.batch_size) is int and type(cli.datamodule.image_size) is int and type(cli.datamodule.num_images) is int
    assert type(cli.model.latent_dim) is int and type(cli.model.data_facts.image_size) is int
    assert type(cli.model.hparams["latent_dim"]) is int


def test_a_negative_learning_rate_is_one_sentence_naming_its_key(tiny_config, tmp_path, capsys):
    line = one_sentence_error(
        capsys,
        "fit",
        "--config",
        tiny_config,
        "--model.init_args.optimizer.init_args.lr",
        "-1",
        "--trainer.default_root_dir",
        tmp_path / "runs",
    )
    assert (
        "--model.init_args.optimizer.init_args.lr -1.0 is not valid: torch.optim.adam.Adam refuses it (Invalid learning rate: -1.0)" in line
    )
    assert line.endswith("set a positive learning rate such as 1e-3.")


def test_an_optimizer_setting_torch_refuses_is_caught_when_the_model_is_built():
    facts = ShapesDataModule(image_size=16).facts
    with pytest.raises(
        UserError, match=r"--model\.init_args\.optimizer\.init_args\.lr -0\.5 is not valid: torch\.optim\.sgd\.SGD refuses it"
    ):
        VAE(facts, channels=(8,), latent_dim=4, optimizer=partial(torch.optim.SGD, lr=-0.5))
    with pytest.raises(UserError, match=r"--model\.init_args\.optimizer\.init_args\.weight_decay -1\.0 is not valid"):
        VAE(facts, channels=(8,), latent_dim=4, optimizer=partial(torch.optim.AdamW, weight_decay=-1.0))
    VAE(facts, channels=(8,), latent_dim=4, optimizer=partial(torch.optim.SGD, lr=0.1))  # a valid one builds


# -- memory ----------------------------------------------------------------------------------------------------------
HUGE = 2**45  # bytes (32 TiB): refused at once by malloc, nothing is touched


def refused_allocation(device: str = "cpu") -> None:
    torch.empty(HUGE, dtype=torch.uint8, device=device)


@pytest.fixture
def cpu_allocations_are_refused():
    """Linux refuses a 32 TiB malloc outright (overcommit heuristic); a machine that grants it (overcommit_memory=1)
    cannot show the real error, and nothing was touched either way."""
    try:
        refused_allocation()
    except RuntimeError:
        return
    pytest.skip("this machine grants a 32 TiB allocation (vm.overcommit_memory=1), so torch's real out-of-memory error cannot be shown")


def test_a_batch_that_does_not_fit_in_cpu_memory_is_one_sentence_with_the_batch_size(
    cpu_allocations_are_refused, tiny_config, tmp_path, capsys, monkeypatch
):
    def step(self, batch, batch_idx):
        refused_allocation()  # torch's own DefaultCPUAllocator error, raised where a too large batch raises it

    monkeypatch.setattr(VAE, "training_step", step)
    line = one_sentence_error(capsys, "fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "runs")
    assert line == (
        "error: ran out of CPU memory with --data.init_args.batch_size 16 (an allocation of 32.0 TiB failed); "
        "lower it, say to --data.init_args.batch_size 8, or use a smaller model."
    ), line


def test_a_batch_that_does_not_fit_in_gpu_memory_is_one_sentence_with_the_batch_size(tiny_config, tmp_path, capsys, monkeypatch):
    def step(self, batch, batch_idx):
        raise torch.OutOfMemoryError(GPU_OOM)  # the class and message CUDA's caching allocator raises

    monkeypatch.setattr(VAE, "training_step", step)
    line = one_sentence_error(capsys, "fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "runs")
    assert "ran out of GPU memory with --data.init_args.batch_size 16 (an allocation of 2.00 GiB failed); lower it" in line, line


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_real_cuda_out_of_memory_error_is_one_sentence():
    from lightning_gen.console.option_errors import explained_resource_errors

    sentence = (
        r"ran out of GPU memory with --batch_size 512 \(an allocation of [\d.]+ [KMGT]iB failed\); "
        r"lower it, say to --batch_size 256, or use a smaller model\.$"
    )
    with pytest.raises(UserError, match=sentence):
        with explained_resource_errors(lambda: ("--batch_size", 512), lambda path: None):
            refused_allocation("cuda")


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory) -> Path:
    data = {"class_path": "lightning_gen.data.ShapesDataModule", "init_args": {"num_images": 40, "image_size": 16, "val_fraction": 0.25}}
    return write_vae_run(tmp_path_factory.mktemp("runs"), data)


def test_sampling_more_images_than_fit_in_memory_names_num(vae_run, tmp_path, capsys, monkeypatch):
    def sample(self, *args, **kwargs):
        raise RuntimeError(CPU_OOM)

    monkeypatch.setattr(VAE, "sample", sample)
    line = one_sentence_error(capsys, "sample", "--ckpt_path", vae_run, "--num", "100000", "--out", tmp_path / "grid.png")
    assert "ran out of CPU memory with --num 100000 (an allocation of 12.5 GiB failed); lower it, say to --num 50000" in line


def test_evaluate_out_of_memory_names_its_batch_size(vae_run, tmp_path, capsys, monkeypatch):
    def reconstruct(self, *args, **kwargs):
        raise torch.OutOfMemoryError(GPU_OOM)

    monkeypatch.setattr(VAE, "reconstruct", reconstruct)
    line = one_sentence_error(
        capsys,
        "evaluate",
        "--ckpt_path",
        vae_run,
        "--metrics",
        "psnr,ssim",
        "--batch_size",
        "64",
        "--cache_dir",
        tmp_path / "cache",
        "--log_to_run",
        "false",
    )
    assert "ran out of GPU memory with --batch_size 64 (an allocation of 2.00 GiB failed); lower it, say to --batch_size 32" in line


# -- folders that cannot be written --------------------------------------------------------------------------------------
def read_only(folder: Path, monkeypatch) -> Path:
    """``folder`` with mode 0o555. Root writes there all the same, so for root mkdir under it raises what it raises
    for anyone else: PermissionError (EACCES) for the path it was asked to make."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):
        real_mkdir = pathlib.Path.mkdir

        def mkdir(self, *args, **kwargs):
            target = Path(os.path.abspath(self))
            if folder.resolve() in target.parents and not target.exists():
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
            return real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    return folder


def test_a_runs_folder_under_a_file_is_one_sentence_naming_it(tiny_config, tmp_path, capsys):
    (tmp_path / "not_a_folder").write_text("x")
    line = one_sentence_error(capsys, "fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "not_a_folder" / "runs")
    assert line == (
        f"error: cannot create {tmp_path / 'not_a_folder' / 'runs' / 'tiny'}: {tmp_path / 'not_a_folder'} is a file, not a folder; "
        f"point --trainer.default_root_dir at a folder you can write (now {tmp_path / 'not_a_folder' / 'runs'})."
    )


def test_a_read_only_runs_folder_is_one_sentence_naming_it(tiny_config, tmp_path, capsys, monkeypatch):
    root = read_only(tmp_path / "runs", monkeypatch)
    try:
        line = one_sentence_error(capsys, "fit", "--config", tiny_config, "--trainer.default_root_dir", root)
    finally:
        root.chmod(0o755)
    assert (
        line == f"error: cannot write {root / 'tiny'} (permission denied); point --trainer.default_root_dir at a "
        f"folder you can write (now {root})."
    )


def test_evaluate_into_a_read_only_run_directory_says_to_keep_the_scores_elsewhere(vae_run, tmp_path, capsys, monkeypatch):
    run = vae_run.parent.parent
    read_only(run, monkeypatch)
    common = ("evaluate", "--ckpt_path", vae_run, "--metrics", "psnr,ssim", "--cache_dir", tmp_path / "cache")
    try:
        line = one_sentence_error(capsys, *common)
        assert line.startswith(
            f"error: cannot write {run / 'evaluation'} (permission denied); the checkpoint's run directory {run} is not writable: "
            "pass --log_to_run false"
        ), line
        run_cli(*common, "--log_to_run", "false", "--out", tmp_path / "scores.json")  # the way out the sentence names
    finally:
        run.chmod(0o755)
    assert (tmp_path / "scores.json").is_file() and not (run / "evaluation").exists()


def test_a_folder_the_command_was_told_to_write_names_its_option(vae_run, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    line = one_sentence_error(capsys, "sample", "--ckpt_path", vae_run, "--num", "2", "--out", tmp_path / "file" / "grid.png")
    assert line == f"error: cannot create {tmp_path / 'file'}: {tmp_path / 'file'} is a file, not a folder; choose a writable --out."
