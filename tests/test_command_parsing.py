"""Every command takes fit's --config and dotted overrides (one way to configure everything)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import TINY_CONFIG, run_cli
from fixtures_awa2 import write_awa2

from lightning_gen.commands import COMMANDS, command_module
from lightning_gen.commands.common import command_parser
from lightning_gen.inference.datamodules import instantiate_datamodule
from lightning_gen.runs.lookup import run_location_of


def test_every_command_has_a_description_and_the_shared_groups():
    for name in COMMANDS:
        module = command_module(name)
        assert isinstance(module.DESCRIPTION, str) and module.DESCRIPTION, name
        destinations = {action.dest for action in command_parser(name, module)._actions}
        for key in ("config", "seed_everything", "trainer.max_epochs", "trainer.devices", "model", "data", "tracking.group", "ema.enabled"):
            assert key in destinations, (name, key)
    parsed = command_parser("sample", command_module("sample")).parse_args(
        ["--ckpt_path", "x.ckpt", "--data.class_path", "lightning_gen.data.ShapesDataModule", "--trainer.max_epochs", "3"]
    )
    assert parsed.trainer.max_epochs == 3 and parsed.data.class_path.endswith("ShapesDataModule")


def test_stats_takes_a_full_fit_config_and_a_dotted_data_override(tmp_path, capsys):
    """The AwA2 run config as shipped (trainer, model, data, ...) with its root and subsets overridden."""
    root = tmp_path / "Animals_with_Attributes2"
    write_awa2(root)
    run_cli(
        "stats", "--config", Path(__file__).resolve().parents[1] / "configs" / "awa2_cvae_v1.yaml",
        "--data.init_args.root", root, "--data.init_args.classes", "[horse, bat]", "--data.init_args.attributes", "[black, white]",
        "--data.init_args.image_size", "8", "--data.init_args.cache_dir", tmp_path / "cache",
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "6 images" in out and "classes (2):" in out
    assert [line.split()[:2] for line in out.splitlines() if line.strip().startswith(("black", "white"))] == [
        ["black", "6"],
        ["white", "0"],
    ]


def test_a_run_config_yaml_is_accepted_by_sample_and_names_its_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = dict(TINY_CONFIG, trainer=dict(TINY_CONFIG["trainer"], max_epochs=1))
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    run_cli("fit", "--config", "tiny.yaml")
    run = tmp_path / "runs" / "tiny" / "version_0"
    checkpoint = run / "checkpoints" / "last.ckpt"
    # The saved config holds fit-only keys (ckpt_path, weights_only): a command still parses it.
    run_cli("sample", "--config", run / "config.yaml", "--ckpt_path", checkpoint, "--num", "4", "--out", "grid.png", "--seed", "1")
    run_cli("sample", "--ckpt_path", checkpoint, "--num", "4", "--out", "plain.png", "--seed", "1")
    assert (tmp_path / "grid.png").read_bytes() == (tmp_path / "plain.png").read_bytes()
    location = run_location_of(checkpoint)
    assert location is not None and location.directory == run.resolve() and location.experiment == "tiny"


def test_a_command_without_a_dataset_says_how_to_give_one():
    parser = command_parser("stats", command_module("stats"))
    with pytest.raises(Exception, match="needs a dataset: pass --config"):
        instantiate_datamodule(parser.parse_args([]), "stats")


def test_a_value_that_starts_with_a_minus_is_joined_to_its_option():
    from lightning_gen.console.option_errors import join_dash_values

    assert join_dash_values(["--strengths", "-1,0,1", "--seed", "-3", "--x", "-.5,-2e-3"]) == [
        "--strengths=-1,0,1",
        "--seed=-3",
        "--x=-.5,-2e-3",
    ]
    # Options, option-like text and values already joined stay as typed.
    unchanged = ["--ckpt_path", "-c", "x.yaml", "--strengths=-1,0", "--name", "-abc", "--", "-1", "-x", "-1"]
    assert join_dash_values(unchanged) == unchanged


def test_edit_takes_negative_strengths_without_an_equals_sign():
    parser = command_parser("edit", command_module("edit"))
    for strengths in ("-1,0,1", "-2.5,-1", "-1"):
        assert parser.parse_args(["--ckpt_path", "x.ckpt", "--strengths", strengths]).strengths == strengths
    assert parser.parse_args(["--ckpt_path", "x.ckpt", "--strengths", "0,1"]).strengths == "0,1"


def test_no_parser_of_the_cli_expands_an_abbreviated_option():
    from lightning_gen.console.option_errors import ParseFailure

    for name in COMMANDS:
        parser = command_parser(name, command_module(name))
        assert parser.allow_abbrev is False, name
        with pytest.raises(ParseFailure, match="unrecognized arguments: --trainer.max_epoch"):
            parser.parse_args(["--ckpt_path", "x.ckpt", "--trainer.max_epoch", "3"])
