"""A CLI that explains itself: --help lists every command, and a mistake on the command line is one sentence, exit 2."""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from conftest import REPO, TINY_CONFIG, process_env, run_cli, run_process

from lightning_gen.cli import TRAINER_COMMANDS
from lightning_gen.commands import COMMANDS, command_module

PROCESS_CASES = {
    "help": ["--help"],
    "fit_misspelt": ["fit", "--config", "{config}", "--model.init_args.kl_wieght", "0.1"],
    "command_misspelt": ["sample", "--ckpt_path", "x.ckpt", "--nmu", "3"],
    "trainer_refuses": ["fit", "--config", "{config}", "--trainer.max_epochs", "-5", "--trainer.default_root_dir", "{root}"],
}


@pytest.fixture(scope="module")
def processes(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Each case as its own process, run side by side (each pays the import time once)."""
    root = tmp_path_factory.mktemp("cli_errors")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_CONFIG))
    cases = {name: [arg.format(config=config, root=root / "runs") for arg in args] for name, args in PROCESS_CASES.items()}
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(run_process, *args) for name, args in cases.items()}
        return {name: future.result() for name, future in futures.items()}


def error_line(result: subprocess.CompletedProcess) -> str:
    """Exit 2 and at most two lines on stderr ("Seed set to N" may come first), the last the one-sentence error."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-3000:]
    assert 1 <= len(lines) <= 2 and lines[-1].startswith("error: "), result.stderr[-3000:]
    assert lines[-1].count(". ") == 0 and lines[-1].rstrip().endswith((".", ")")), lines[-1]
    return lines[-1]


def test_help_lists_every_command_one_line_each_under_the_programs_name(processes):
    result = processes["help"]
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("usage: python -m lightning_gen ") and "__main__" not in out
    listed = {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines() if line.startswith("  ")}
    assert set(listed) == set(TRAINER_COMMANDS) | set(COMMANDS)
    for name in COMMANDS:
        assert listed[name] == command_module(name).DESCRIPTION


@pytest.mark.skipif(shutil.which("lightning-gen") is None, reason="the console script is installed with the package")
def test_the_console_script_names_itself():
    env = {**process_env(), "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(["lightning-gen", "--help"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0 and result.stdout.startswith("usage: lightning-gen COMMAND")


def test_a_misspelt_model_option_names_the_closest_valid_ones(processes):
    line = error_line(processes["fit_misspelt"])
    assert "--model.init_args.kl_wieght" in line and "lightning_gen.models.VAE" in line
    assert "did you mean --model.init_args.kl_weight" in line


def test_a_commands_misspelt_option_is_one_sentence(processes):
    assert "--nmu is not an option; did you mean --num" in error_line(processes["command_misspelt"])


def test_a_setting_the_trainer_refuses_is_one_sentence(processes):
    line = error_line(processes["trainer_refuses"])
    assert "max_epochs" in line and "-5" in line and "Traceback" not in processes["trainer_refuses"].stderr


def in_process(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        run_cli(*args)
    return exit_.value.code, capsys.readouterr().err.strip()


def test_an_unknown_command_names_the_closest(capsys):
    code, err = in_process(capsys, "smaple", "--num", "3")
    assert code == 2 and err.startswith("error: 'smaple' is not a command; did you mean sample") and "\n" not in err


def test_a_misspelt_settings_option_names_the_closest_valid_ones(tiny_config, capsys):
    code, err = in_process(capsys, "fit", "--config", tiny_config, "--tracking.nmae", "x")
    assert code == 2 and "\n" not in err and "--tracking.nmae is not an option; did you mean --tracking.name" in err


def test_a_commands_misspelt_dotted_override_names_the_closest_valid_ones(tiny_config, capsys):
    code, err = in_process(capsys, "stats", "--config", tiny_config, "--data.init_args.batch_sise", "3")
    assert code == 2 and "\n" not in err and "--data.init_args.batch_sise" in err and "did you mean --data.init_args.batch_size" in err


def test_a_bad_value_is_one_sentence(tiny_config, capsys):
    code, err = in_process(capsys, "fit", "--config", tiny_config, "--trainer.max_epochs", "abc")
    assert code == 2 and "\n" not in err and "--trainer.max_epochs abc is not valid: expected int" in err


def test_a_misspelt_optimizer_option_is_checked_against_the_optimizer(tiny_config, capsys):
    code, err = in_process(capsys, "fit", "--config", tiny_config, "--model.init_args.optimizer.init_args.lrr", "0.1")
    assert code == 2 and "\n" not in err and "of torch.optim.Adam; did you mean --model.init_args.optimizer.init_args.lr" in err


def test_judge_score_is_importable_where_the_readme_names_it(tiny_config, capsys):
    from lightning_gen.callbacks import JudgeScore
    from lightning_gen.callbacks.judge_score import JudgeScore as Defined

    assert JudgeScore is Defined
    callback = "{class_path: lightning_gen.callbacks.JudgeScore, init_args: {judge_ckpt: judge.ckpt}}"
    with pytest.raises(SystemExit) as exit_:
        run_cli("fit", "--config", tiny_config, "--trainer.callbacks+", callback, "--print_config")
    assert exit_.value.code in (0, None) and "JudgeScore" in capsys.readouterr().out


def test_an_abbreviated_option_is_refused_with_the_full_name_not_taken_for_it(tiny_config, tmp_path, capsys):
    """argparse's prefix matching would read --trainer.max_epoch 3 as --trainer.max_epochs 3 without a word."""
    code, err = in_process(
        capsys, "fit", "--config", tiny_config, "--trainer.max_epoch", "3", "--trainer.default_root_dir", tmp_path / "runs"
    )
    assert (
        code == 2 and "\n" not in err and err.startswith("error: --trainer.max_epoch is not an option; did you mean --trainer.max_epochs")
    ), err
    assert not (tmp_path / "runs").exists()


def test_a_commands_abbreviated_option_is_refused_too(capsys):
    code, err = in_process(capsys, "sample", "--ckpt_path", "x.ckpt", "--nu", "3")
    assert code == 2 and err.startswith("error: --nu is not an option; did you mean --num"), err


def test_a_negative_list_value_parses_without_an_equals_sign(tiny_config, capsys):
    assert in_process(capsys, "fit", "--config", tiny_config, "--images.edit_strengths", "[-1,0,1]", "--print_config")[0] in (0, None)
    code, err = in_process(capsys, "fit", "--config", tiny_config, "--images.edit_strengths", "-1,0,1", "--print_config")
    assert code == 2 and err.endswith("--images.edit_strengths -1,0,1 is not valid: expected a list, written [-1,0,1]."), err


def test_a_text_value_that_starts_with_a_minus_says_to_write_it_with_equals(tiny_config, capsys):
    code, err = in_process(capsys, "fit", "--config", tiny_config, "--tracking.name", "-run", "--print_config")
    assert code == 2 and "\n" not in err
    assert (
        err == "error: --tracking.name needs a value and -run was read as an option; write --tracking.name=-run "
        "(with =) for a value that starts with '-'."
    )
