"""Every way a fit stops saves last.ckpt at the step reached, for the model of every shipped config.

The shipped configs (configs/*.yaml) are grouped by what their model is — class and mode arguments (prior,
CVAE variant/condition/injection, DDPM conditioning and objective, Judge targets), defaults filled in from the class — and
each group runs from its first config with the model's size arguments shrunk (8/16-channel convolutions,
a 16/32-channel UNet, a tiny random T5 for text), on 16×16 shapes (the configs' own data where it is the
shapes set; the built-in shapes set in place of datasets on disk, which has the classes, attributes and
captions every model needs). Everything else of the config (optimizer, EMA, precision, clipping) is kept.
A config that brings a new model kind is a new group of its own, so it is tested without an edit here;
test_every_shipped_config_is_covered checks that the kinds this suite was written for are all still there.

Every stop runs in the test process (the handlers are those of a command-line run). Over every group:
  validation — an exception mid-validation, while EMA's weights are swapped in (and the VAE's mixture is fitted);
  max_time   — Lightning's Timer runs out (its clock is moved on, so no test waits for it);
  SIGINT     — the first Ctrl-C, sent to this process at the end of a step: exit code 130;
  guard      — a NaN batch from some step on, until the NaN guard stops the run.
Over one group a model class (VAE, BetaVAE — its mixture-prior group —, CVAE, DDPM — its text group —, Judge):
  exception  — raised at the start of a training step (the step is replayed on resume: saved before it);
  SIGTERM, SIGUSR1 — exit codes 143 and 138.
On the model's side these take the paths above (the save at an exception outside validation, in on_exception;
RunEndSave turns SIGINT and SIGUSR1 into Lightning's SIGTERM stop), and every case costs about a second of
command-line parsing, the most of a tiny run: all of them over all groups would not fit the suite's budget.
Each asserts that last.ckpt holds exactly the step reached, with the weights of that step (the raw weights,
recorded in memory when the step ended; for the guard those of the last finite step), and that the run's
own error is the one raised. The signals as sent to a separate process (exit codes 143 and 130, the
continue line) are tested once, on the tiny VAE, in test_run_end_saves.py.
"""

from __future__ import annotations

import importlib
import inspect
import os
import shlex
import signal
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import yaml
from conftest import REPO, SimulatedKill, run_cli
from fixtures_latent import write_tiny_autoencoder
from lightning.pytorch.callbacks import Timer

from lightning_gen.checkpoints import run_end
from lightning_gen.checkpoints.run_end import RunEndSave, weights_are_finite

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
MODES = ("prior", "variant", "condition", "injection", "conditioning", "objective", "targets")
STEP = 3  # every stop comes at (or, for the guard, from) this step: inside the first epoch of 4 steps; the runs stop at 8


def model_class(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def mode_defaults(cls: type) -> dict[str, Any]:
    """The mode arguments' defaults, through **kwargs to the base classes (CVAE passes prior on to VAE)."""
    defaults: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for name, parameter in inspect.signature(init).parameters.items():
            if name in MODES and parameter.default is not inspect.Parameter.empty:
                defaults[name] = parameter.default
    return defaults


def model_kind(config: dict[str, Any]) -> str:
    class_path = config["model"]["class_path"]
    cls = model_class(class_path)
    modes = {**mode_defaults(cls), **{k: v for k, v in (config["model"].get("init_args") or {}).items() if k in MODES}}
    return cls.__name__ + "".join(f"-{modes[name]}" for name in MODES if name in modes)


def group_configs() -> dict[str, list[Path]]:
    groups: dict[str, list[Path]] = {}
    for path in CONFIGS:
        groups.setdefault(model_kind(yaml.safe_load(path.read_text())), []).append(path)
    return groups


GROUPS = group_configs()
KINDS = sorted(GROUPS)


def tiny_model_args(class_name: str, init_args: dict[str, Any], t5: Path, cache: Path) -> dict[str, Any]:
    args = dict(init_args)
    scheduler = args.get("lr_scheduler")
    if isinstance(scheduler, dict) and scheduler.get("init_args"):  # a warm-up of 1000 steps does not fit in 8
        schedule = dict(scheduler["init_args"])
        schedule.update({key: value for key, value in (("warmup_steps", 2), ("total_steps", 8)) if key in schedule})
        args["lr_scheduler"] = {**scheduler, "init_args": schedule}
    if class_name == "LatentDiffusion":  # a tiny autoencoder for the 16×16 images: 4×4×4 latents
        args["autoencoder"] = str(write_tiny_autoencoder(cache.parent / "tiny_autoencoder.ckpt", image_size=16))
    if class_name in ("DDPM", "LatentDiffusion"):
        unet = dict(args.get("unet") or {})
        unet.update(block_out_channels=[16, 32], layers_per_block=1, norm_num_groups=8, attention_head_dim=2)
        for key in ("down_block_types", "up_block_types"):
            if key in unet:  # keep the kinds of block (cross-attention ones included), one per level
                unet[key] = [unet[key][0], unet[key][-1]]
        args.update(unet=unet, sampling_steps=2, validation_steps=2)
        if args.get("conditioning") == "text":
            args.update(text_encoder=str(t5), max_text_length=8, text_cache_dir=str(cache))
        return args
    if class_name == "Autoencoder":
        args.update(block_out_channels=[8, 16], layers_per_block=1, mid_block_attention=False)
        return args
    args["channels"] = [8, 16]
    if class_name == "Judge":
        args["hidden"] = 16
        return args
    args["latent_dim"] = 4
    if args.get("decoder_dense"):
        args["decoder_dense"] = [16]
    if "gmm_components" in args:
        args["gmm_components"] = 2
    return args


def tiny_config(source: Path, t5: Path, cache: Path) -> dict[str, Any]:
    config = yaml.safe_load(source.read_text())
    model = config["model"]
    class_name = model["class_path"].rpartition(".")[2]
    data = config["data"]
    shapes = "lightning_gen.data.ShapesDataModule"
    data_args = dict(data.get("init_args") or {}) if data["class_path"] == shapes else {}
    data_args.update(num_images=40, image_size=16, batch_size=8)  # 36 training images: 4 steps an epoch (the last partial batch is dropped)
    kept = {key: value for key, value in config["trainer"].items() if key in ("precision", "gradient_clip_val", "gradient_clip_algorithm")}
    trainer = {
        "accelerator": "cpu",
        "devices": 1,
        "max_steps": 8,
        "max_epochs": -1,
        "check_val_every_n_epoch": 1000,
        "num_sanity_val_steps": 0,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "log_every_n_steps": 50,
        **kept,
    }
    return {
        "seed_everything": config.get("seed_everything", 0),
        "trainer": trainer,
        "model": {"class_path": model["class_path"], "init_args": tiny_model_args(class_name, model.get("init_args") or {}, t5, cache)},
        "data": {"class_path": shapes, "init_args": data_args},
        **{key: config[key] for key in ("ema", "guard") if key in config},
        "tracking": {"logger": "csv"},
        "images": {"num_images": 2, "interpolation_pairs": 1, "interpolation_steps": 2},
    }


@pytest.fixture(scope="module")
def tiny_configs(tmp_path_factory) -> dict[str, Path]:
    """One tiny config a model kind, named after the first config of its group (the run's experiment name)."""
    from lightning_gen.text.tiny_t5 import build_tiny_t5, shapes_captions

    root = tmp_path_factory.mktemp("configs")
    t5 = build_tiny_t5(root / "tiny_t5", shapes_captions(), d_model=16)
    paths = {}
    for kind, sources in GROUPS.items():
        path = root / kind / sources[0].name
        path.parent.mkdir()
        path.write_text(yaml.safe_dump(tiny_config(sources[0], t5, root / "text_cache")))
        paths[kind] = path
    return paths


# -- the stops, as callbacks listed by class path --------------------------------------------------------------
RECORDED: dict[int, dict[str, torch.Tensor]] = {}


class RecordWeights(pl.Callback):
    """Keeps the model's tensors as they are at the end of the given step (before any stop can touch them)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            RECORDED[self.step] = {k: v.detach().clone() for k, v in pl_module.state_dict().items() if isinstance(v, torch.Tensor)}


class SignalAtStep(pl.Callback):
    def __init__(self, signum: int, step: int):
        self.signum = signum
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


class TimeRunsOutAtStep(pl.Callback):
    """max_time runs out during the given step: the Timer counts its whole budget as spent when the step begins."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step - 1:
            for timer in (callback for callback in trainer.callbacks if isinstance(callback, Timer)):
                timer._offset = timer._duration  # what a resumed Timer restores as the time already elapsed


class FailInValidation(pl.Callback):
    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        raise RuntimeError("a bug in validation")


class PoisonFrom(pl.Callback):
    """One NaN pixel in every batch from the given step on: every loss and gradient is NaN."""

    def __init__(self, step: int):
        self.step = step
        self.hooks: list[Any] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step >= self.step:
            batch["image"][0, 0, 0, 0] = float("nan")
            # A model that trains on cached latents never reads the pixels: poison what its trained parts read too.
            for child in pl_module.children() if not self.hooks else ():
                if any(parameter.requires_grad for parameter in child.parameters()):
                    self.hooks.append(child.register_forward_pre_hook(poison_first_input))


def poison_first_input(module, args):
    if module.training and args and isinstance(args[0], torch.Tensor) and args[0].is_floating_point():
        return (args[0] + float("nan"), *args[1:])
    return None


def callback(name: str, **init_args: Any) -> list[str]:
    module = "conftest" if name == "KillAtStep" else __name__
    return [
        "--trainer.callbacks+",
        yaml.safe_dump({"class_path": f"{module}.{name}", "init_args": init_args}, default_flow_style=True).strip(),
    ]


SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT, "SIGUSR1": signal.SIGUSR1}
STOPS = ["validation", "max_time", "SIGINT", "guard"]


def family_kind(class_name: str) -> str:
    kinds = [kind for kind in KINDS if kind.split("-")[0] == class_name]
    return next((kind for kind in kinds if "-gmm" in kind or "-text" in kind), kinds[0])


CASES = [(kind, stop) for kind in KINDS for stop in STOPS]
CASES += [
    (family_kind(name), stop) for name in sorted({kind.split("-")[0] for kind in KINDS}) for stop in ("exception", "SIGTERM", "SIGUSR1")
]


def fit(config: Path, root: Path, *extra: str) -> None:
    run_cli("fit", "--config", config, "--trainer.default_root_dir", root, *extra)


def last_ckpt(root: Path, config: Path) -> dict[str, Any]:
    path = root / config.stem / "version_0/checkpoints/last.ckpt"
    assert path.is_file(), f"{path} was not saved"
    return torch.load(path, map_location="cpu", weights_only=True)


def raw_weights(checkpoint: dict[str, Any]) -> dict[str, Any]:
    return checkpoint.get("current_model_state", checkpoint["state_dict"])  # state_dict holds the EMA weights when EMA is on


def assert_weights_of_step(checkpoint: dict[str, Any], step: int) -> None:
    saved = raw_weights(checkpoint)
    for name, tensor in RECORDED[step].items():
        assert torch.equal(saved[name], tensor), f"{name} differs from its value at the end of step {step}"


@pytest.mark.parametrize(("kind", "stop"), CASES, ids=[f"{kind}-{stop}" for kind, stop in CASES])
def test_every_stop_saves_last_ckpt_at_the_step_reached(kind, stop, tiny_configs, tmp_path, one_torch_thread, capsys, recwarn):
    config = tiny_configs[kind]
    RECORDED.clear()
    handler = signal.getsignal(signal.SIGINT)
    record = callback("RecordWeights", step=STEP)
    if stop == "exception":
        with pytest.raises(SimulatedKill, match=f"killed at step {STEP}"):
            fit(config, tmp_path, *record, *callback("KillAtStep", step=STEP))
    elif stop == "validation":
        with pytest.raises(RuntimeError, match="a bug in validation"):
            fit(
                config,
                tmp_path,
                *record,
                *callback("FailInValidation"),
                "--trainer.check_val_every_n_epoch",
                "1",
                "--trainer.val_check_interval",
                str(STEP),
                "--trainer.limit_val_batches",
                "1",
            )
    elif stop == "max_time":
        fit(config, tmp_path, *record, *callback("TimeRunsOutAtStep", step=STEP), "--trainer.max_time", "00:01:00:00")
    elif stop in SIGNALS:
        with pytest.raises(SystemExit) as stopped:
            fit(config, tmp_path, *record, *callback("SignalAtStep", signum=int(SIGNALS[stop]), step=STEP))
        assert stopped.value.code == 128 + SIGNALS[stop]
    else:
        with pytest.raises(SystemExit) as stopped:
            fit(
                config,
                tmp_path,
                *callback("RecordWeights", step=STEP - 1),
                *callback("PoisonFrom", step=STEP - 1),
                "--guard.max_consecutive_nonfinite",
                "2",
            )
        assert stopped.value.code == 2
    output = capsys.readouterr()
    assert not [warning for warning in recwarn if "could not save" in str(warning.message)]  # RunEndSave's own failure
    checkpoint = last_ckpt(tmp_path, config)
    if stop == "guard":
        # Steps STEP and STEP + 1 were NaN, both skipped; the run stops in the second: last.ckpt counts the first
        # (a resume replays the second) and holds the weights of step STEP - 1, the last finite one.
        assert output.err.strip().splitlines()[-1].startswith(f"error: training stopped at step {STEP + 1}: ")
        assert checkpoint["global_step"] == STEP
        assert_weights_of_step(checkpoint, STEP - 1)
        for weights in (checkpoint["state_dict"], raw_weights(checkpoint)):
            assert all(torch.isfinite(tensor).all() for tensor in run_end.floating_tensors(weights))
    else:
        assert checkpoint["global_step"] == STEP
        assert_weights_of_step(checkpoint, STEP)
    if stop in SIGNALS:
        last = tmp_path / config.stem / "version_0/checkpoints/last.ckpt"
        assert f"Stopped by {stop}; continue from {last} with: python -m lightning_gen fit --config {config} " in output.err
    if stop == "validation" and "-gmm" in kind:
        assert checkpoint["state_dict"]["latent_prior._extra_state"]["fitted"]  # the mixture fitted when validation began
    assert signal.getsignal(signal.SIGINT) is handler  # RunEndSave gave the handler back


def test_every_shipped_config_is_covered():
    covered = {path for paths in GROUPS.values() for path in paths}
    assert covered == set(CONFIGS) and len(CONFIGS) > 20
    # The kinds this suite was written for are still there (a renamed mode would silently drop a case otherwise).
    expected = [
        ("BetaVAE", "gmm"),
        ("BetaVAE", "standard"),
        ("VAE", "standard"),
        ("CVAE", "v1"),
        ("CVAE", "v2"),
        ("CVAE", "attributes"),
        ("CVAE", "film"),
        ("DDPM", "none"),
        ("DDPM", "class"),
        ("DDPM", "text"),
        ("DDPM", "flow_matching"),
        ("Judge", ""),
    ]
    assert all(any(kind.split("-")[0] == name and mode in kind for kind in KINDS) for name, mode in expected), KINDS


def test_the_continue_line_continues_the_run(tiny_configs, tmp_path, one_torch_thread, capsys):
    config = tiny_configs[next(kind for kind in KINDS if "-gmm" in kind)]
    with pytest.raises(SystemExit) as stopped:
        fit(config, tmp_path, *callback("SignalAtStep", signum=int(signal.SIGTERM), step=STEP))
    assert stopped.value.code == 143
    line = capsys.readouterr().err.strip().splitlines()[-1]
    command = shlex.split(line.split(" with: python -m lightning_gen ", 1)[1])
    assert command[-2:] == ["--ckpt_path", "last"]
    run_cli(*command)  # the same run, on to max_steps
    assert last_ckpt(tmp_path, config)["global_step"] == 8
    assert not (tmp_path / config.stem / "version_1").exists()


def test_a_failing_run_end_save_leaves_the_runs_own_error_visible(tiny_configs, tmp_path, one_torch_thread, monkeypatch):
    config = tiny_configs[next(kind for kind in KINDS if "-gmm" in kind)]

    def broken(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(RunEndSave, "_save_at_exception", broken)
    with pytest.warns(UserWarning, match="could not save .*last.ckpt after SimulatedKill .OSError: disk full"):
        with pytest.raises(SimulatedKill, match=f"killed at step {STEP}") as raised:
            fit(config, tmp_path, *callback("KillAtStep", step=STEP))
    assert raised.value.__context__ is None  # raised as it was, not while handling another error


class WithExtraState(torch.nn.Module):
    def __init__(self, state: dict[str, Any]):
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)
        self.state = state

    def get_extra_state(self) -> dict[str, Any]:
        return self.state

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.state = state


def test_the_finiteness_check_reads_the_tensors_in_extra_state():
    assert weights_are_finite(WithExtraState({"fitted": False}))
    assert weights_are_finite(WithExtraState({"fitted": True, "means": torch.ones(2, 2), "counts": [torch.ones(1)]}))
    assert not weights_are_finite(WithExtraState({"fitted": True, "means": torch.full((2, 2), float("nan"))}))
    assert not weights_are_finite(WithExtraState({"fitted": True, "nested": {"scale": [torch.tensor([float("inf")])]}}))
    huge = WithExtraState({})
    with torch.no_grad():
        huge.linear.weight.fill_(1e30)  # finite, though the norm of all of them would overflow
    assert weights_are_finite(huge)
