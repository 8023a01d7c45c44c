"""Every shipped config parses; the seed-003 config trains on a fixture in the real layout and fails clearly without data."""

import pytest
import yaml
from conftest import REPO, run_cli, run_process
from fixtures_cat_faces import write_cat_faces

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "--config", config, "--print_config")
    assert exit_info.value.code in (0, None)
    printed, written = yaml.safe_load(capsys.readouterr().out), yaml.safe_load(config.read_text())
    # Every setting the file makes is the parsed one (a misspelt or dropped key would not round-trip).
    for section in ("model", "data"):
        assert printed[section]["class_path"].rpartition(".")[2] == written[section]["class_path"].rpartition(".")[2]
        assert_subset(written[section].get("init_args", {}), printed[section]["init_args"], section)
    for key, value in written.get("trainer", {}).items():
        if key != "callbacks":
            assert printed["trainer"][key] == value, f"trainer.{key}"


def assert_subset(written: dict, printed: dict, where: str) -> None:
    for key, value in written.items():
        if isinstance(value, dict) and "class_path" not in value and isinstance(printed.get(key), dict):
            assert_subset(value, printed[key], f"{where}.{key}")
        elif not isinstance(value, dict):
            expected = list(value) if isinstance(value, tuple) else value
            assert printed[key] == expected or (isinstance(expected, str) and str(printed[key]) == expected), f"{where}.{key}"


def test_cats_beta0005_trains_on_the_real_layout(tmp_path):
    write_cat_faces(tmp_path / "cats")
    run_cli(
        "fit",
        "--config",
        REPO / "configs/cats_beta0005.yaml",
        "--data.root",
        tmp_path / "cats",
        "--data.init_args.batch_size",
        "4",
        "--data.init_args.cache_dir",
        tmp_path / "cache",
        "--trainer.default_root_dir",
        tmp_path / "runs",
        "--trainer.max_epochs",
        "1",
        "--trainer.accelerator",
        "cpu",
        "--trainer.enable_progress_bar",
        "false",
        "--tracking.logger",
        "csv",
    )
    assert (tmp_path / "runs/cats_beta0005/version_0/checkpoints/last.ckpt").is_file()


def test_missing_data_root_is_one_clear_sentence(tmp_path):
    missing = tmp_path / "no_cats_here"
    result = run_process(
        "fit",
        "--config",
        "configs/cats_beta0005.yaml",
        "--data.root",
        missing,
        "--trainer.default_root_dir",
        tmp_path / "runs",
        "--tracking.logger",
        "csv",
    )
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and str(missing) in message
    assert "kaggle.com" in message and "data.root" in message
    assert "Traceback" not in result.stderr


def test_a_bad_value_found_while_building_the_model_is_one_sentence(tmp_path):
    result = run_process(
        "fit",
        "--config",
        "configs/quickstart.yaml",
        "--data.init_args.image_size",
        "20",
        "--trainer.default_root_dir",
        tmp_path / "runs",
        "--tracking.logger",
        "csv",
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: model.channels has 3 stride-2 levels but the image size 20")
    assert "Traceback" not in result.stderr
