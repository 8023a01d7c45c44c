"""``COMMAND --help`` shows the command's own options first and fit's shared groups one line each; ``--help-all`` everything."""

from __future__ import annotations

import argparse
import re

import pytest
from conftest import run_cli
from jsonargparse import ArgumentParser

from lightning_gen.cli import TRAINER_COMMANDS
from lightning_gen.commands import COMMANDS, command_module
from lightning_gen.commands.common import command_parser

SHARED_LINES = ("--trainer.*", "--model CLASS_PATH", "--data CLASS_PATH", "--tracking.*", "--checkpointing.*", "--ema.*", "--images.*")


@pytest.fixture(autouse=True)
def eighty_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # argparse wraps to the terminal; tests read the same layout everywhere


def help_of(capsys, *args: str) -> list[str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        run_cli(*args)
    assert exit_.value.code in (0, None)
    return capsys.readouterr().out.splitlines()


def own_options(name: str) -> list[str]:
    """The long options the command itself adds (its ``add_arguments``), as a parser of its own has them."""
    parser = ArgumentParser()
    command_module(name).add_arguments(parser)
    return [
        option
        for action in parser._actions
        if action.help != argparse.SUPPRESS and action.dest != "help"
        for option in action.option_strings
        if option.startswith("--")
    ]


def own_keys(name: str) -> set[str]:
    parser = ArgumentParser()
    command_module(name).add_arguments(parser)
    return {action.dest for action in parser._actions}


def index_of(lines: list[str], text: str) -> int:
    """The line that starts with ``text``, or the option entry (``  -c CONFIG, --config CONFIG``) that names it."""
    for index, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped.startswith(text) or stripped.startswith("-") and text in re.split(r"[\s,]+", stripped.split("  ")[0]):
            return index
    raise AssertionError(f"{text} is not in the help:\n" + "\n".join(lines))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_commands_help_shows_its_own_options_first_and_the_shared_groups_one_line_each(name, capsys):
    lines = help_of(capsys, name, "--help")
    assert lines[0].startswith(f"usage: lightning-gen {name} ") and len(lines[0]) <= 90, lines[0]
    own = own_options(name) or ["--config"]  # stats reads only the config's data section
    first_own = min(index_of(lines, option) for option in own)
    assert first_own < 30, "\n".join(lines[:40])
    groups = index_of(lines, "config groups, one line each")
    for option in own:
        assert index_of(lines, option) < groups, (name, option)
    for shared in SHARED_LINES:
        if shared.split()[0][2:].rstrip(".*") in own_keys(name):  # evaluate's and mix's images replace fit's image-grid group
            continue
        entry = index_of(lines, shared)
        assert entry > groups and (entry + 1 == len(lines) or lines[entry + 1].startswith("  --")), (name, shared, lines[entry : entry + 2])
    text = "\n".join(lines)
    assert "--trainer.max_epochs" not in text and "--tracking.name" not in text and "--help-all" in text
    assert len(lines) < len(own) * 4 + 60, len(lines)  # was ~640 lines


@pytest.mark.parametrize("name", sorted(TRAINER_COMMANDS))
def test_fit_and_the_other_trainer_commands_show_the_model_and_data_summary_first(name, capsys):
    lines = help_of(capsys, name, "--help")
    assert lines[0].startswith(f"usage: python -m lightning_gen {name} ")
    assert index_of(lines, "--model CLASS_PATH") < index_of(lines, "--data CLASS_PATH") < index_of(lines, "options:") < 15
    model = "\n".join(lines[index_of(lines, "--model CLASS_PATH") : index_of(lines, "--data CLASS_PATH")])
    assert "Autoencoder, VAE, BetaVAE, CVAE, DDPM, Judge or LatentDiffusion (in" in " ".join(model.split())
    assert "ModelBase" not in model and "GenerativeModel" not in model and "--model.help VAE" in model
    assert index_of(lines, "--ckpt_path") < index_of(lines, "config groups, one line each") < index_of(lines, "--trainer.*")
    text = "\n".join(lines)
    assert "--trainer.max_epochs" not in text and "hpc" not in text  # Lightning's long ckpt_path docstring: --help-all
    assert len(lines) < 80, len(lines)


def full_help(parser) -> str:
    parser.short_help = False
    return parser.format_help()


@pytest.mark.parametrize("name", ["evaluate", "sample"])
def test_help_all_prints_argparses_full_help_as_before(name, capsys):
    lines = help_of(capsys, name, "--help-all")
    assert "\n".join(lines) + "\n" == full_help(command_parser(name, command_module(name)))
    text = "\n".join(lines)
    assert "--trainer.max_epochs" in text and "--tracking.name" in text and "--model.help" in text and len(lines) > 400


def test_fits_help_all_lists_every_trainer_option(capsys):
    text = "\n".join(help_of(capsys, "fit", "--help-all"))
    for option in (
        "--trainer.max_epochs",
        "--trainer.accumulate_grad_batches",
        "--tracking.name",
        "--images.edit_strengths",
        "--model.help",
    ):
        assert option in text
    assert '"registry"' in text  # the full ckpt_path docstring


def test_help_builds_no_model_and_no_dataset(tiny_config, capsys, monkeypatch):
    from lightning_gen.data.base import GenerativeDataModule
    from lightning_gen.models.base import GenerativeModel

    def refuse(*args, **kwargs):
        raise AssertionError("--help built a model or a datamodule")

    monkeypatch.setattr(GenerativeModel, "__init__", refuse)
    monkeypatch.setattr(GenerativeDataModule, "__init__", refuse)
    assert "--model CLASS_PATH" in "\n".join(help_of(capsys, "fit", "--config", tiny_config, "--help"))
    assert "--num NUM" in "\n".join(help_of(capsys, "sample", "--config", tiny_config, "--help"))


def test_a_class_help_still_lists_the_classes_options_in_full(capsys):
    text = "\n".join(help_of(capsys, "fit", "--model.help", "VAE"))
    assert "--model.latent_dim" in text and "--model.kl_weight" in text and "config groups" not in text


def test_the_top_level_help_all_is_the_command_list(capsys):
    lines = help_of(capsys, "--help-all")
    assert lines[0].startswith("usage: python -m lightning_gen COMMAND") and "--help-all" in lines[-1]
