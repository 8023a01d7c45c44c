"""Safe loading: a checkpoint is read as data, never run as code, and names only lightning_gen models."""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, TINY_CONFIG, run_cli, run_process

from lightning_gen.checkpoints.loading import load_model
from lightning_gen.errors import UserError


class RunsCode:
    """Unpickling this calls os.system, as a malicious shared checkpoint would."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("safe_loading")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_CONFIG))
    run_cli("fit", "--config", config, "--trainer.default_root_dir", root / "runs", "--trainer.max_steps", "2")
    return root


@pytest.fixture(scope="module")
def checkpoint(workdir) -> Path:
    return workdir / "runs/tiny/version_0/checkpoints/last.ckpt"


def altered_copy(checkpoint: Path, destination: Path, change) -> Path:
    """A copy of a real checkpoint in a run directory of its own (so a resume would find its run)."""
    content = torch.load(checkpoint, map_location="cpu", weights_only=True)
    change(content)
    destination.parent.mkdir(parents=True, exist_ok=True)
    torch.save(content, destination)
    return destination


def code_running_copy(checkpoint: Path, destination: Path, marker: Path) -> Path:
    return altered_copy(checkpoint, destination, lambda content: content["lightning_gen"].update(note=RunsCode(marker)))


def renamed_model_copy(checkpoint: Path, destination: Path, model_class: str) -> Path:
    return altered_copy(checkpoint, destination, lambda content: content["lightning_gen"].update(model_class=model_class))


def assert_one_sentence_exit_2(returncode: int, stderr: str, *phrases: str) -> None:
    """Exit 2 and one error line, last (Lightning may log "Seed set to N" before it)."""
    lines = stderr.strip().splitlines()
    assert returncode == 2, stderr
    assert 1 <= len(lines) <= 2 and lines[-1].startswith("error: ") and lines[-1].count(". ") == 0, stderr
    for phrase in phrases:
        assert phrase in lines[-1]


def run_in_process(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        run_cli(*args)
    return exit_.value.code, capsys.readouterr().err


def test_the_payload_really_runs_code_when_unpickled_unsafely(checkpoint, tmp_path):
    evil = code_running_copy(checkpoint, tmp_path / "evil.ckpt", tmp_path / "marker")
    torch.load(evil, weights_only=False)
    assert (tmp_path / "marker").exists()  # so its absence below means the code did not run


def test_sample_refuses_a_checkpoint_whose_pickle_runs_code(checkpoint, tmp_path):
    marker = tmp_path / "marker"
    evil = code_running_copy(checkpoint, tmp_path / "evil.ckpt", marker)
    result = run_process("sample", "--ckpt_path", evil, "--num", "2", "--out", tmp_path / "grid.png")
    assert_one_sentence_exit_2(result.returncode, result.stderr, "posix.system", "could run code")
    assert not marker.exists() and not (tmp_path / "grid.png").exists()


def test_fit_refuses_to_resume_from_a_checkpoint_whose_pickle_runs_code(workdir, checkpoint, tmp_path):
    marker = tmp_path / "marker"
    evil = code_running_copy(checkpoint, tmp_path / "runs/tiny/version_0/checkpoints/last.ckpt", marker)
    result = run_process(
        "fit",
        "--config",
        workdir / "tiny.yaml",
        "--trainer.default_root_dir",
        tmp_path / "runs",
        "--trainer.max_steps",
        "4",
        "--ckpt_path",
        evil,
    )
    assert_one_sentence_exit_2(result.returncode, result.stderr, "could run code")
    assert not marker.exists()


def test_lightnings_own_resume_reads_weights_only_even_when_torch_is_told_otherwise(workdir, checkpoint, tmp_path, monkeypatch):
    # Past our own first read of the file, Lightning loads it again; that load must be weights_only too,
    # not torch's default, which this variable turns off.
    import lightning_gen.cli

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    monkeypatch.setattr(lightning_gen.cli, "read_run_info", lambda path: {})
    marker = tmp_path / "marker"
    evil = code_running_copy(checkpoint, tmp_path / "evil.ckpt", marker)
    with pytest.raises(pickle.UnpicklingError):
        run_cli(
            "fit",
            "--config",
            workdir / "tiny.yaml",
            "--trainer.default_root_dir",
            tmp_path / "runs",
            "--trainer.max_steps",
            "4",
            "--ckpt_path",
            evil,
        )
    assert not marker.exists()


def test_fit_refuses_to_turn_weights_only_off(workdir, tmp_path, capsys):
    code, stderr = run_in_process(
        capsys, "fit", "--config", workdir / "tiny.yaml", "--weights_only", "false", "--trainer.default_root_dir", tmp_path
    )
    assert_one_sentence_exit_2(code, stderr, "--weights_only false is not supported")


@pytest.mark.parametrize("model_class", ["os.system", "builtins.eval"])
def test_sample_refuses_a_checkpoint_naming_a_class_outside_lightning_gen(checkpoint, tmp_path, model_class, capsys):
    renamed = renamed_model_copy(checkpoint, tmp_path / "renamed.ckpt", model_class)
    code, stderr = run_in_process(capsys, "sample", "--ckpt_path", renamed, "--num", "2", "--out", tmp_path / "grid.png")
    assert_one_sentence_exit_2(code, stderr, f"'{model_class}'", "not a lightning_gen model")


@pytest.mark.parametrize("model_class", ["os.system", "builtins.eval"])
def test_fit_refuses_to_resume_a_checkpoint_naming_a_class_outside_lightning_gen(workdir, checkpoint, tmp_path, model_class, capsys):
    renamed = renamed_model_copy(checkpoint, tmp_path / "runs/tiny/version_0/checkpoints/last.ckpt", model_class)
    code, stderr = run_in_process(
        capsys,
        "fit",
        "--config",
        workdir / "tiny.yaml",
        "--trainer.default_root_dir",
        tmp_path / "runs",
        "--trainer.max_steps",
        "4",
        "--ckpt_path",
        renamed,
    )
    assert_one_sentence_exit_2(code, stderr, "not a lightning_gen model")


def test_a_model_class_in_another_module_is_not_imported(checkpoint, tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "plants_a_marker.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Model: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    renamed = renamed_model_copy(checkpoint, tmp_path / "renamed.ckpt", "plants_a_marker.Model")
    with pytest.raises(UserError, match="not a lightning_gen model"):
        load_model(renamed)
    assert not marker.exists() and "plants_a_marker" not in sys.modules


def test_resuming_with_another_models_config_is_one_sentence(workdir, checkpoint, tmp_path, capsys):
    renamed = renamed_model_copy(checkpoint, tmp_path / "runs/tiny/version_0/checkpoints/last.ckpt", "lightning_gen.models.ddpm.DDPM")
    code, stderr = run_in_process(
        capsys,
        "fit",
        "--config",
        workdir / "tiny.yaml",
        "--trainer.default_root_dir",
        tmp_path / "runs",
        "--trainer.max_steps",
        "4",
        "--ckpt_path",
        renamed,
    )
    assert_one_sentence_exit_2(code, stderr, "lightning_gen.models.ddpm.DDPM", "lightning_gen.models.VAE")


def test_a_real_checkpoint_loads_weights_only(checkpoint):
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = load_model(checkpoint)
    assert type(model).__name__ == "VAE"
    for name, value in model.state_dict().items():
        assert torch.equal(value, saved["state_dict"][name])


def test_every_torch_load_in_the_package_is_weights_only():
    """A guard for code added later: each torch.load call in lightning_gen passes weights_only=True literally."""
    import ast

    offenders = []
    for path in sorted((REPO / "lightning_gen").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                flag = next((keyword.value for keyword in node.keywords if keyword.arg == "weights_only"), None)
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []


# -- YAML: python tags never build objects, and the refusal is one sentence ----------------------------------
PYTHON_TAG = "!!python/object/apply:os.system"


def tagged_config(path: Path, marker: Path) -> Path:
    path.write_text(f'seed_everything: 7\ndata: {PYTHON_TAG} ["touch {marker}"]\n')
    return path


@pytest.mark.parametrize("command", ["fit", "sample", "evaluate", "sweep"])
def test_a_python_tag_in_a_config_is_one_sentence_naming_the_file_and_line(tmp_path, capsys, command):
    marker = tmp_path / "marker"
    config = tagged_config(tmp_path / "tagged.yaml", marker)
    code, stderr = run_in_process(capsys, command, "--config", config)
    assert_one_sentence_exit_2(code, stderr, str(config), "line 2", PYTHON_TAG, "refuses python tags")
    assert not marker.exists()


def test_a_python_tag_in_a_runs_config_is_refused_by_edit(checkpoint, tmp_path, capsys):
    marker = tmp_path / "marker"
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "model.ckpt").write_bytes(checkpoint.read_bytes())
    config = tagged_config(folder / "config.yaml", marker)
    from PIL import Image

    Image.new("RGB", (20, 20), (200, 30, 30)).save(tmp_path / "x.png")
    code, stderr = run_in_process(capsys, "edit", "--ckpt_path", folder / "model.ckpt", "--image", tmp_path / "x.png", "--attribute", "red",
                                  "--references", "16", "--out", tmp_path / "edit.png")  # fmt: skip
    assert_one_sentence_exit_2(code, stderr, str(config.resolve()), "line 2", PYTHON_TAG, "refuses python tags")
    assert not marker.exists()


def test_python_tags_are_refused_without_building_anything(tmp_path):
    from lightning_gen.config.trust import read_config

    marker = tmp_path / "marker"
    with pytest.raises(UserError, match="refuses python tags"):
        read_config(tagged_config(tmp_path / "tagged.yaml", marker))
    assert not marker.exists()


# -- weights files a library unpickles fully ---------------------------------------------------------------
def test_inception_weights_whose_pickle_runs_code_are_refused_before_torch_fidelity_reads_them(tmp_path):
    """torch-fidelity loads the FID Inception weights with weights_only=False; lightning_gen reads them weights-only first."""
    pytest.importorskip("torch_fidelity")
    from lightning_gen.metrics.extractors import build_extractor

    marker = tmp_path / "marker"
    evil = tmp_path / "weights-inception.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": RunsCode(marker)}, evil)
    with pytest.raises(UserError, match="could run code"):
        build_extractor("inception", str(evil))
    assert not marker.exists()


# -- guards for code added later ---------------------------------------------------------------------------
def _calls(path: Path):
    import ast

    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_no_yaml_loader_that_builds_objects_and_no_lightning_hparams_loading_in_the_package():
    """Every YAML read is safe_load (or the safe loader); nothing calls load_from_checkpoint / load_hparams_from_yaml,
    which would instantiate what a checkpoint or hparams.yaml names."""
    offenders = []
    for path in sorted((REPO / "lightning_gen").rglob("*.py")):
        for node, name in _calls(path):
            short = name.rsplit(".", 1)[-1]
            loader = next((keyword.value for keyword in node.keywords if keyword.arg == "Loader"), None)
            unsafe_yaml = name in ("yaml.full_load", "yaml.unsafe_load", "yaml.load_all", "yaml.full_load_all", "yaml.unsafe_load_all") or (
                name == "yaml.load" and (loader is None or "Safe" not in __import__("ast").unparse(loader))
            )
            if unsafe_yaml or short in ("load_from_checkpoint", "load_hparams_from_yaml"):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {name}")
    assert offenders == []


def test_configs_are_built_only_where_the_allow_list_was_applied():
    """jsonargparse's ``instantiate_class``/``instantiate_classes`` build whatever class path they are given; outside the
    CLI the one caller is ``inference.datamodules.datamodule_from_config``, which builds data sections that
    ``data_section_of_run`` checked (or the user's own --config/--data)."""
    users = sorted(
        str(path.relative_to(REPO))
        for path in (REPO / "lightning_gen").rglob("*.py")
        if any(name.rsplit(".", 1)[-1] in ("instantiate_class", "instantiate_classes") for _, name in _calls(path))
    )
    assert users == ["lightning_gen/inference/datamodules.py"]
