"""Nothing a user is handed runs code: a hostile ``config.yaml`` (of a run, or beside a checkpoint), a hostile
``hparams.yaml`` and hostile checkpoint hyperparameters, against every command that reads them.

Each hostile file names ``subprocess.call`` / ``os.system`` with arguments that would ``touch`` a marker
file, or a module that touches it when merely imported. Every command must leave the marker absent and,
where it reads the file, exit 2 with one sentence naming the file, the refused class path and the fix.
The allow-list and its one check live in ``lightning_gen.config.trust``.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_CONFIG, run_cli
from latent_checkpoints import write_photo

from lightning_gen.config.trust import UntrustedConfig, allowed_class, check_config, check_config_arguments, lies_in_run_directory
from lightning_gen.errors import UserError

REPO = Path(__file__).resolve().parents[1]
PAYLOADS = ("subprocess.call", "os.system", "import")
IMPORTED_MODULE = "plants_a_marker_on_import"
RUN_FIX = "copy it out of the run directory"


# -- fixtures and helpers ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_torch_thread) -> Path:
    """A real run directory of a tiny VAE on shapes (whose attributes edit can use)."""
    root = tmp_path_factory.mktemp("hostile")
    config = copy.deepcopy(TINY_CONFIG)
    config["ema"] = {"enabled": False}
    (root / "tiny.yaml").write_text(yaml.safe_dump(config))
    run_cli("fit", "--config", root / "tiny.yaml", "--trainer.default_root_dir", root / "runs", "--trainer.max_steps", "2")
    return root / "runs" / "tiny" / "version_0"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("photos")
    return write_photo(root / "a.png", (40, 30), (230, 30, 30)), write_photo(root / "b.png", (30, 40), (30, 60, 240))


@pytest.fixture
def marker(tmp_path, monkeypatch) -> Path:
    """The file the payloads create; also a module on sys.path that creates it when imported."""
    path = tmp_path / "PWNED"
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / f"{IMPORTED_MODULE}.py").write_text(f"open({str(path)!r}, 'w').close()\nclass DataModule: pass\n")
    monkeypatch.syspath_prepend(str(modules))
    yield path
    imported = sys.modules.pop(IMPORTED_MODULE, None) is not None
    assert not imported, "the hostile config's module was imported"


def payload(kind: str, marker: Path) -> tuple[dict, str]:
    """(a class spec that would touch ``marker`` when built, the class path a refusal must name)."""
    if kind == "subprocess.call":
        return {"class_path": "subprocess.call", "init_args": {"args": ["touch", str(marker)]}}, "subprocess.call"
    if kind == "os.system":
        return {"class_path": "os.system", "init_args": {"command": f"touch {marker}"}}, "os.system"
    return {"class_path": f"{IMPORTED_MODULE}.DataModule", "init_args": {}}, f"{IMPORTED_MODULE}.DataModule"


def saved_config(run: Path) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text())


def hostile_config(run: Path, spec: dict) -> dict:
    """The run's own saved config with its data section replaced by ``spec``."""
    config = saved_config(run)
    config["data"] = spec
    return config


def copy_run(run: Path, destination: Path, config: dict | None = None, checkpoint_change=None) -> Path:
    """A run directory ``destination`` (``…/version_0``) with the run's checkpoint and ``config`` (default: the run's own)."""
    (destination / "checkpoints").mkdir(parents=True)
    checkpoint = destination / "checkpoints" / "last.ckpt"
    if checkpoint_change is None:
        shutil.copy(run / "checkpoints" / "last.ckpt", checkpoint)
    else:
        content = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        checkpoint_change(content)
        torch.save(content, checkpoint)
    (destination / "config.yaml").write_text(yaml.safe_dump(config if config is not None else saved_config(run)))
    return destination


def loose_checkpoint(run: Path, folder: Path, config: dict) -> tuple[Path, Path]:
    """A checkpoint outside any ``checkpoints/`` folder with a ``config.yaml`` beside it (the one edit and app read)."""
    folder.mkdir(parents=True)
    shutil.copy(run / "checkpoints" / "last.ckpt", folder / "model.ckpt")
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder / "model.ckpt", folder / "config.yaml"


def refused(capsys, *args) -> str:
    """Runs the CLI in this process; asserts exit 2 with one error sentence, which it returns."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        run_cli(*args)
    stderr = capsys.readouterr().err
    lines = [line for line in stderr.strip().splitlines() if line.startswith("error: ")]
    assert exit_.value.code == 2, stderr
    assert len(lines) == 1 and lines[0] == stderr.strip().splitlines()[-1], stderr
    assert lines[0].count(". ") == 0 and lines[0].endswith("."), lines[0]
    return lines[0]


def assert_names(line: str, file: Path | str, class_path: str, fix: str = RUN_FIX) -> None:
    assert str(file) in line and class_path in line and fix in line, line


# -- config.yaml beside a checkpoint or in its run: edit and app ---------------------------------------
@pytest.mark.parametrize("kind", PAYLOADS)
def test_edit_refuses_a_hostile_config_beside_a_loose_checkpoint(trained, photos, marker, tmp_path, capsys, kind):
    spec, name = payload(kind, marker)
    ckpt, config = loose_checkpoint(trained, tmp_path / "shared", hostile_config(trained, spec))
    out = tmp_path / "edit.png"
    line = refused(capsys, "edit", "--ckpt_path", ckpt, "--image", photos[0], "--attribute", "red", "--references", "16", "--out", out)
    assert_names(line, config.resolve(), name)
    assert "data.class_path" in line
    assert not marker.exists() and not out.exists()


def test_edit_refuses_a_hostile_config_of_the_checkpoints_run(trained, photos, marker, tmp_path, capsys):
    spec, name = payload("subprocess.call", marker)
    run = copy_run(trained, tmp_path / "runs" / "shared" / "version_0", hostile_config(trained, spec))
    line = refused(
        capsys,
        "edit",
        "--ckpt_path",
        run / "checkpoints" / "last.ckpt",
        "--image",
        photos[0],
        "--attribute",
        "red",
        "--references",
        "16",
        "--out",
        tmp_path / "edit.png",
    )
    assert_names(line, (run / "config.yaml").resolve(), name)
    assert not marker.exists()


@pytest.mark.parametrize("kind", PAYLOADS)
def test_the_app_service_refuses_a_hostile_config_at_start_up(trained, marker, tmp_path, kind):
    from lightning_gen.app.service import MixerService

    spec, name = payload(kind, marker)
    ckpt, config = loose_checkpoint(trained, tmp_path / "shared", hostile_config(trained, spec))
    with pytest.raises(UserError) as error:
        service = MixerService(str(ckpt), "cpu", references=16)
        service.gallery()  # what the page shows first, at start-up
    assert_names(str(error.value), config.resolve(), name, "move it away from the checkpoint")
    assert not marker.exists()


def test_the_app_command_refuses_a_hostile_config_before_serving(trained, marker, tmp_path, capsys, monkeypatch):
    pytest.importorskip("gradio", reason="gradio is not installed: pip install 'lightning-gen[app]'")
    import lightning_gen.app.page

    served = []
    monkeypatch.setattr(lightning_gen.app.page, "launch", lambda service, *args, **kwargs: served.append(service.gallery()))
    spec, name = payload("subprocess.call", marker)
    ckpt, config = loose_checkpoint(trained, tmp_path / "shared", hostile_config(trained, spec))
    line = refused(capsys, "app", "--ckpt_path", ckpt, "--references", "16", "--device", "cpu")
    assert_names(line, config.resolve(), name, "move it away from the checkpoint")
    assert not marker.exists() and served == []


# -- a run's config.yaml: evaluate, compare -----------------------------------------------------------
@pytest.mark.parametrize("kind", PAYLOADS)
def test_evaluate_refuses_a_hostile_config_of_the_checkpoints_run(trained, marker, tmp_path, capsys, kind):
    spec, name = payload(kind, marker)
    run = copy_run(trained, tmp_path / "runs" / "shared" / "version_0", hostile_config(trained, spec))
    line = refused(
        capsys, "evaluate", "--ckpt_path", run / "checkpoints" / "last.ckpt", "--metrics", "psnr", "--out", tmp_path / "scores.json"
    )
    assert_names(line, (run / "config.yaml").resolve(), name)
    assert not marker.exists() and not (tmp_path / "scores.json").exists()


def test_compare_refuses_a_hostile_run_config(trained, marker, tmp_path, capsys):
    spec, name = payload("subprocess.call", marker)
    good = copy_run(trained, tmp_path / "runs" / "good" / "version_0")
    bad = copy_run(trained, tmp_path / "runs" / "bad" / "version_0", hostile_config(trained, spec))
    line = refused(capsys, "compare", good, bad, "--out", tmp_path / "compare", "--device", "cpu")
    assert_names(line, (bad / "config.yaml").resolve(), name, "leave that run out of the comparison")
    assert not marker.exists() and not (tmp_path / "compare").exists()


def test_compare_by_group_refuses_a_hostile_run_config(trained, marker, tmp_path, capsys):
    spec, name = payload("import", marker)
    root = tmp_path / "runs"
    copy_run(trained, root / "good" / "version_0", {**saved_config(trained), "tracking": {"group": "g", "logger": "csv"}})
    bad = copy_run(trained, root / "bad" / "version_0", {**hostile_config(trained, spec), "tracking": {"group": "g", "logger": "csv"}})
    line = refused(capsys, "compare", "--group", "g", "--root", root, "--out", tmp_path / "compare", "--device", "cpu")
    assert_names(line, bad / "config.yaml", name, "leave that run out of the comparison")
    assert not marker.exists()


# -- a run's config.yaml passed with --config: every command ---------------------------------------------
def hostile_run(trained: Path, tmp_path: Path, kind: str, marker: Path) -> tuple[Path, str]:
    spec, name = payload(kind, marker)
    return copy_run(trained, tmp_path / "runs" / "shared" / "version_0", hostile_config(trained, spec)), name


@pytest.mark.parametrize("kind", PAYLOADS)
@pytest.mark.parametrize("form", ["--config", "-c", "--config="])
def test_fit_refuses_a_hostile_run_config(trained, marker, tmp_path, capsys, kind, form):
    run, name = hostile_run(trained, tmp_path, kind, marker)
    config = run / "config.yaml"
    given = [f"--config={config}"] if form == "--config=" else [form, config]
    line = refused(capsys, "fit", *given, "--trainer.default_root_dir", tmp_path / "out", "--trainer.max_steps", "1")
    assert_names(line, config, name)
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["validate", "test", "predict"])
def test_the_trainer_commands_refuse_a_hostile_run_config(trained, marker, tmp_path, capsys, command):
    run, name = hostile_run(trained, tmp_path, "subprocess.call", marker)
    line = refused(
        capsys,
        command,
        "--config",
        run / "config.yaml",
        "--ckpt_path",
        run / "checkpoints" / "last.ckpt",
        "--trainer.default_root_dir",
        tmp_path / "out",
    )
    assert_names(line, run / "config.yaml", name)
    assert not marker.exists()


def test_a_hostile_run_config_is_refused_wherever_it_names_a_class(trained, marker, tmp_path, capsys):
    """The payload in trainer.callbacks, in the model's optimizer and as a plain string where a class may stand."""
    config = saved_config(trained)
    config["trainer"]["callbacks"] = [
        {"class_path": "lightning.pytorch.callbacks.LambdaCallback", "init_args": {"on_fit_start": "os.system"}}
    ]
    run = copy_run(trained, tmp_path / "runs" / "a" / "version_0", config)
    line = refused(capsys, "fit", "--config", run / "config.yaml", "--trainer.default_root_dir", tmp_path / "out")
    assert_names(line, run / "config.yaml", "os.system")
    assert "trainer.callbacks[0].init_args.on_fit_start" in line
    config = saved_config(trained)
    config["model"]["init_args"]["optimizer"] = {"class_path": "subprocess.Popen", "init_args": {"args": ["touch", str(marker)]}}
    run = copy_run(trained, tmp_path / "runs" / "b" / "version_0", config)
    line = refused(capsys, "fit", "--config", run / "config.yaml", "--trainer.default_root_dir", tmp_path / "out")
    assert_names(line, run / "config.yaml", "subprocess.Popen")
    assert not marker.exists()


@pytest.mark.parametrize("command", ["sample", "mix", "stats", "evaluate", "export", "downstream", "sweep", "edit", "app", "compare"])
def test_every_command_refuses_a_hostile_run_config_given_with_config(trained, photos, marker, tmp_path, capsys, command):
    run, name = hostile_run(trained, tmp_path, "subprocess.call", marker)
    ckpt = run / "checkpoints" / "last.ckpt"
    arguments = {
        "sample": ["--ckpt_path", ckpt, "--num", "2", "--out", tmp_path / "grid.png"],
        "mix": ["--ckpt_path", ckpt, *photos, "--out", tmp_path / "mix.png"],
        "stats": [],
        "evaluate": ["--ckpt_path", ckpt, "--metrics", "psnr"],
        "export": ["--ckpt_path", ckpt, "--num", "2", "--out", tmp_path / "export"],
        "downstream": ["--synthetic", tmp_path / "synthetic", "--out", tmp_path / "downstream"],
        "sweep": ["--set", "model.init_args.kl_weight=1,2", "--dry_run", "true"],
        "edit": ["--ckpt_path", ckpt, "--image", photos[0], "--attribute", "red", "--references", "16"],
        "app": ["--ckpt_path", ckpt],
        "compare": [run, run],
    }[command]
    line = refused(capsys, command, "--config", run / "config.yaml", *arguments)
    assert_names(line, run / "config.yaml", name)
    assert not marker.exists()


def test_sweeps_fit_processes_refuse_a_hostile_run_config(trained, marker, tmp_path, monkeypatch, capfd):
    from lightning_gen.commands.sweep import fit_in_subprocess
    from lightning_gen.errors import UserError

    run, name = hostile_run(trained, tmp_path, "import", marker)
    # The payload's module is importable in the sweep's fit process too: only the check keeps it from running there.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(marker.parent / "modules"), os.environ.get("PYTHONPATH", "")]))
    with pytest.raises(UserError, match="exited with 2"):
        fit_in_subprocess(["--config", str(run / "config.yaml"), "--trainer.default_root_dir", str(tmp_path / "out")])
    assert name in capfd.readouterr().err and not marker.exists()


# -- commands that read no config beside the checkpoint ------------------------------------------------
def test_sample_mix_and_export_ignore_a_hostile_config_beside_the_checkpoint(trained, photos, marker, tmp_path):
    spec, _ = payload("subprocess.call", marker)
    ckpt, _ = loose_checkpoint(trained, tmp_path / "shared", hostile_config(trained, spec))
    run_cli("sample", "--ckpt_path", ckpt, "--num", "2", "--out", tmp_path / "grid.png", "--device", "cpu")
    run_cli("mix", "--ckpt_path", ckpt, *photos, "--steps", "3", "--out", tmp_path / "mix.png", "--device", "cpu")
    run_cli("export", "--ckpt_path", ckpt, "--num", "2", "--out", tmp_path / "export", "--trainer.accelerator", "cpu")
    assert (tmp_path / "grid.png").is_file() and (tmp_path / "mix.png").is_file() and (tmp_path / "export" / "000001.png").is_file()
    assert not marker.exists()


# -- benign run configs still work -----------------------------------------------------------------------
def test_a_benign_run_config_still_works(trained, photos, tmp_path, capsys):
    check_config(saved_config(trained), trained / "config.yaml")
    run_cli(
        "fit",
        "--config",
        trained / "config.yaml",
        "--trainer.default_root_dir",
        tmp_path / "again",
        "--trainer.max_steps",
        "1",
        "--tracking.name",
        "again",
    )
    assert (tmp_path / "again" / "again" / "version_0" / "checkpoints" / "last.ckpt").is_file()
    ckpt, _ = loose_checkpoint(trained, tmp_path / "shared", saved_config(trained))
    run_cli(
        "edit",
        "--ckpt_path",
        ckpt,
        "--image",
        photos[0],
        "--attribute",
        "red",
        "--references",
        "16",
        "--out",
        tmp_path / "edit.png",
        "--device",
        "cpu",
    )
    assert (tmp_path / "edit.png").is_file()
    from lightning_gen.app.service import MixerService

    assert len(MixerService(str(ckpt), "cpu", references=16).gallery()) > 0


@pytest.mark.parametrize("config", sorted((REPO / "configs").glob("*.yaml")), ids=lambda path: path.name)
def test_every_shipped_config_passes_the_check(config):
    check_config(yaml.safe_load(config.read_text()), config)


# -- hostile hparams: hparams.yaml files and a checkpoint's hyper_parameters -------------------------------
def hostile_hparams(marker: Path) -> dict:
    spec, _ = payload("subprocess.call", marker)
    return {"_instantiator": "subprocess.call", "_class_path": "subprocess.call", "data": spec, "model": {**spec}, "activation": spec}


def test_hostile_hparams_yaml_files_are_never_read(trained, photos, marker, tmp_path, capsys):
    """Lightning's loggers write hparams.yaml; nothing in lightning_gen reads one (nor calls load_from_checkpoint)."""
    good = copy_run(trained, tmp_path / "runs" / "good" / "version_0")
    other = copy_run(trained, tmp_path / "runs" / "other" / "version_0")
    for folder in (good, good / "checkpoints", other):
        (folder / "hparams.yaml").write_text(
            yaml.safe_dump(hostile_hparams(marker)) + "tagged: !!python/object/apply:os.system [touch " + str(marker) + "]\n"
        )
    ckpt = good / "checkpoints" / "last.ckpt"
    run_cli("sample", "--ckpt_path", ckpt, "--num", "2", "--out", tmp_path / "grid.png", "--device", "cpu")
    run_cli(
        "edit",
        "--ckpt_path",
        ckpt,
        "--image",
        photos[0],
        "--attribute",
        "red",
        "--references",
        "16",
        "--out",
        tmp_path / "edit.png",
        "--device",
        "cpu",
    )
    run_cli("evaluate", "--ckpt_path", ckpt, "--metrics", "psnr", "--device", "cpu", "--out", tmp_path / "scores.json")
    run_cli("compare", good, other, "--out", tmp_path / "compare", "--device", "cpu", "--num_images", "2", "--interpolation_steps", "2")
    run_cli(
        "validate",
        "--config",
        trained.parent.parent.parent / "tiny.yaml",
        "--ckpt_path",
        ckpt,
        "--trainer.default_root_dir",
        tmp_path / "validate",
    )
    from lightning_gen.app.service import MixerService

    assert len(MixerService(str(ckpt), "cpu", references=16).gallery()) > 0
    assert (tmp_path / "edit.png").is_file() and (tmp_path / "scores.json").is_file() and (tmp_path / "compare" / "runs.md").is_file()
    assert not marker.exists()


def with_hostile_hyperparameters(marker: Path):
    spec, _ = payload("subprocess.call", marker)
    return lambda content: content["hyper_parameters"].update(activation=spec)


@pytest.mark.parametrize("command", ["sample", "mix", "edit", "evaluate", "export", "compare", "app"])
def test_every_command_refuses_hostile_checkpoint_hyperparameters(trained, photos, marker, tmp_path, capsys, monkeypatch, command):
    run = copy_run(trained, tmp_path / "runs" / "shared" / "version_0", checkpoint_change=with_hostile_hyperparameters(marker))
    ckpt = run / "checkpoints" / "last.ckpt"
    if command == "app":
        pytest.importorskip("gradio", reason="gradio is not installed: pip install 'lightning-gen[app]'")
        import lightning_gen.app.page

        monkeypatch.setattr(lightning_gen.app.page, "launch", lambda service, *args, **kwargs: service.gallery())
    arguments = {
        "sample": ["--ckpt_path", ckpt, "--num", "2", "--out", tmp_path / "grid.png"],
        "mix": ["--ckpt_path", ckpt, *photos, "--out", tmp_path / "mix.png"],
        "edit": ["--ckpt_path", ckpt, "--image", photos[0], "--attribute", "red", "--references", "16"],
        "evaluate": ["--ckpt_path", ckpt, "--metrics", "psnr"],
        "export": ["--ckpt_path", ckpt, "--num", "2", "--out", tmp_path / "export"],
        "compare": [run, copy_run(trained, tmp_path / "runs" / "good" / "version_0"), "--out", tmp_path / "compare"],
        "app": ["--ckpt_path", ckpt],
    }[command]
    line = refused(capsys, command, *arguments, "--device", "cpu") if command != "export" else refused(capsys, command, *arguments)
    assert f"checkpoint {ckpt}" in line and "subprocess.call" in line and "hyper_parameters.activation.class_path" in line, line
    assert "pass a checkpoint written by lightning_gen" in line
    assert not marker.exists()


def test_lightnings_own_hparams_entries_in_a_checkpoint_are_dropped_unread(trained, marker, tmp_path):
    """``_instantiator``/``_class_path`` (what load_from_checkpoint would call) are never used: loading and validating work."""
    from lightning_gen.checkpoints.loading import load_model

    run = copy_run(
        trained,
        tmp_path / "runs" / "shared" / "version_0",
        checkpoint_change=lambda content: content["hyper_parameters"].update(
            _instantiator="subprocess.call", _class_path="subprocess.call"
        ),
    )
    ckpt = run / "checkpoints" / "last.ckpt"
    assert type(load_model(ckpt)).__name__ == "VAE"
    run_cli(
        "validate",
        "--config",
        trained.parent.parent.parent / "tiny.yaml",
        "--ckpt_path",
        ckpt,
        "--trainer.default_root_dir",
        tmp_path / "validate",
    )
    assert not marker.exists()


def test_a_weight_snapshot_with_hostile_hyperparameters_is_refused(trained, marker, tmp_path, capsys):
    from lightning_gen.checkpoints.loading import load_model
    from lightning_gen.checkpoints.snapshots import METADATA_KEY, save_snapshot, snapshot_metadata

    model = load_model(trained / "checkpoints" / "last.ckpt")
    metadata = snapshot_metadata(model, "raw", 2)
    info = json.loads(metadata[METADATA_KEY])
    info["hyper_parameters"]["activation"] = payload("subprocess.call", marker)[0]
    snapshot = tmp_path / "snapshot-step0000002.safetensors"
    save_snapshot(snapshot, model.state_dict(), torch.float32, {**metadata, METADATA_KEY: json.dumps(info)})
    line = refused(capsys, "sample", "--ckpt_path", snapshot, "--num", "2", "--out", tmp_path / "grid.png", "--device", "cpu")
    assert f"weight snapshot {snapshot}" in line and "subprocess.call" in line and "hyper_parameters.activation.class_path" in line
    assert not marker.exists()


# -- the check itself: every form a class can take in a config -------------------------------------------
@pytest.mark.parametrize(
    "config, where",
    [
        ({"data": {"class_path": "subprocess.call"}}, "data.class_path"),
        ({"data.class_path": "subprocess.call"}, "data.class_path"),
        ({"--data.class_path": "subprocess.call"}, "--data.class_path"),
        (
            {"trainer": {"callbacks": [{"class_path": "lightning_gen.callbacks.EMA"}, {"class_path": "subprocess.Popen"}]}},
            "trainer.callbacks[1].class_path",
        ),
        (
            {"model": {"class_path": "lightning_gen.models.VAE", "init_args": {"optimizer": {"class_path": "os.system"}}}},
            "model.init_args.optimizer.class_path",
        ),
        ({"model": {"init_args": {"lr_scheduler": {"class_path": "builtins.eval"}}}}, "model.init_args.lr_scheduler.class_path"),
        ({"data": "subprocess.call"}, "data"),  # jsonargparse takes a class path string where a class may stand
        ({"data": '{"class_path": "subprocess.call", "init_args": {"args": ["id"]}}'}, "data.class_path"),  # and parses YAML strings
        ({"data": {"class_path": "Popen"}}, "data.class_path"),  # a short name no allowed module has
        ({"data": {"class_path": "lightning_gen.commands.sweep.fit_in_subprocess"}}, "data.class_path"),  # a function, not a class
        ({"data": {"class_path": "lightning_gen.commands.sweep.subprocess"}}, "data.class_path"),  # a module
        ({"data": {"class_path": "lightning_gen.metrics.extractors._load_class"}}, "data.class_path"),
        ({"model": {"_class_path": "subprocess.call"}}, "model._class_path"),
        ({"data": {"class_path": ["subprocess.call"]}}, "data.class_path"),
        ({"feature_extractor": "os.getcwd"}, "feature_extractor"),
        (
            {
                "trainer": {
                    "callbacks": [
                        {"class_path": "lightning_gen.callbacks.sample_quality.SampleQuality", "init_args": {"feature_extractor": "x.pt2"}}
                    ]
                }
            },
            "trainer.callbacks[0].init_args.feature_extractor",
        ),
    ],
)
def test_the_check_refuses_every_form(config, where, marker):
    with pytest.raises(UntrustedConfig) as error:
        check_config(config, "a config")
    assert f" {where}" in str(error.value) and str(error.value).count(". ") == 0


def test_the_check_follows_nested_config_files(tmp_path, marker):
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"class_path": "subprocess.call", "init_args": {"args": ["touch", str(marker)]}}))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"data": "data.yaml"}))
    with pytest.raises(UntrustedConfig, match="data.yaml names subprocess.call at class_path"):
        check_config(yaml.safe_load((tmp_path / "config.yaml").read_text()), tmp_path / "config.yaml")


def test_the_check_accepts_what_lightning_gen_configs_name():
    check_config(
        {
            "model": {
                "class_path": "VAE",
                "init_args": {
                    "optimizer": {"class_path": "Adam", "init_args": {"lr": 1e-3}},
                    "lr_scheduler": {"class_path": "lightning_gen.models.schedules.WarmupCosine"},
                },
            },
            "data": {"class_path": "lightning_gen.data.ShapesDataModule", "init_args": {"root": "data/shapes", "name": "shapes.v2"}},
            "trainer": {
                "callbacks": [{"class_path": "ModelCheckpoint"}, {"class_path": "lightning.pytorch.callbacks.EarlyStopping"}],
                "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger"},
                "strategy": "ddp",
                "plugins": [{"class_path": "lightning.pytorch.plugins.environments.SLURMEnvironment"}],
            },
            "images": {"feature_extractor": "inception"},
            "tracking": {"project": "lightning_gen", "group": "beta.sweep"},
        },
        "a config",
    )
    assert allowed_class("torch.optim.lr_scheduler.CosineAnnealingLR") and not allowed_class("lightning.pytorch.cli.instantiate_module")


def test_hyperparameters_are_checked_for_class_paths_only():
    """Plain strings of a checkpoint's hyperparameters go to the model as they are (a class named after a folder ``site.com``)."""
    hyperparameters = {"data_facts": {"class_names": ["site.com", "os.path"]}, "latent_dim": 8}
    check_config(hyperparameters, "checkpoint x.ckpt", strings=False)
    with pytest.raises(UntrustedConfig):
        check_config(hyperparameters, "a config")
    with pytest.raises(UntrustedConfig, match="hyper_parameters.encoder.class_path"):
        check_config({"encoder": {"class_path": "os.system"}}, "checkpoint x.ckpt", where="hyper_parameters", strings=False)


def test_a_refused_name_is_never_imported(marker):
    with pytest.raises(UntrustedConfig):
        check_config({"data": {"class_path": f"{IMPORTED_MODULE}.DataModule"}}, "a config")
    with pytest.raises(UntrustedConfig):
        check_config({"data": f"{IMPORTED_MODULE}.DataModule"}, "a config")
    assert not marker.exists()


def test_what_lies_in_a_run_directory(trained, tmp_path):
    assert lies_in_run_directory(trained / "config.yaml")
    loose, _ = loose_checkpoint(trained, tmp_path / "shared", {})
    assert lies_in_run_directory(loose.parent / "config.yaml")
    (tmp_path / "mine").mkdir()
    assert not lies_in_run_directory(tmp_path / "mine" / "config.yaml", roots=[tmp_path / "runs"])
    assert lies_in_run_directory(tmp_path / "mine" / "config.yaml", roots=[tmp_path])
    assert not lies_in_run_directory(REPO / "configs" / "quickstart.yaml")


def test_a_users_own_config_may_name_the_users_own_classes(tmp_path, marker):
    """A config file outside any run is the user's own choice: not checked (conftest.KillAtStep is how the resume tests kill runs)."""
    (tmp_path / "mine").mkdir()
    mine = tmp_path / "mine" / "mine.yaml"
    mine.write_text(yaml.safe_dump({"trainer": {"callbacks": [{"class_path": "conftest.KillAtStep", "init_args": {"step": 2}}]}}))
    check_config_arguments(["fit", "--config", str(mine)])
    assert not marker.exists()
