"""Start-up imports only what a command uses: ``--help`` and ``COMMAND --help`` never load the heavy extras."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO, process_env

HEAVY = ("wandb", "diffusers", "transformers", "gradio", "matplotlib", "sklearn", "torch_fidelity", "datasets")
# `import torch, lightning` itself loads a little of some (torchmetrics probes transformers, matplotlib, torch_fidelity):
# what counts is a heavy module loaded beyond that floor.
FLOOR = "import sys, torch, lightning; print(sorted(sys.modules))"

# Runs the CLI as ``python -m lightning_gen ARGS`` would and prints the top-level modules loaded when it exits.
PROBE = """
import json, runpy, sys
sys.argv = ["lightning_gen", *json.loads(sys.argv[1])]
try:
    runpy.run_module("lightning_gen", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
print("MODULES " + json.dumps(sorted(sys.modules)))
print("OURS " + json.dumps(sorted(name for name in sys.modules if name.startswith("lightning_gen"))))
"""


def loaded(*args: str) -> tuple[set[str], set[str]]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)], cwd=REPO, env=process_env(), capture_output=True, text=True, timeout=300
    )
    lines = {
        line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1]) for line in result.stdout.splitlines() if line[:4] in ("MODU", "OURS")
    }
    assert "MODULES" in lines, result.stderr[-3000:]
    return set(lines["MODULES"]), set(lines["OURS"])


def printed_modules(code: str) -> set[str]:
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=process_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return set(json.loads(result.stdout.strip().splitlines()[-1].replace("'", '"')))


@pytest.fixture(scope="module")
def floor() -> set[str]:
    return printed_modules(FLOOR)


def heavy_beyond(modules: set[str], floor: set[str]) -> list[str]:
    return sorted(name for name in modules - floor if name.split(".")[0] in HEAVY)


def test_the_check_sees_a_heavy_import(floor):
    assert heavy_beyond(printed_modules("import sys, torch, lightning, diffusers; print(sorted(sys.modules))"), floor)


def test_importing_the_cli_loads_no_heavy_extra(floor):
    assert not heavy_beyond(printed_modules("import sys, lightning_gen.cli; print(sorted(sys.modules))"), floor)


@pytest.mark.parametrize("args", [("--help",), ("fit", "--help"), ("sample", "--help")])
def test_help_loads_no_heavy_extra_and_no_other_command(args, floor):
    modules, ours = loaded(*args)
    assert not heavy_beyond(modules, floor)
    commands = {name.rsplit(".", 1)[1] for name in ours if name.startswith("lightning_gen.commands.")} - {"common"}
    assert commands == ({args[0]} if args[0] == "sample" else set()), commands
    assert not {"lightning_gen.models.ddpm", "lightning_gen.models.unets", "lightning_gen.text.t5"} & ours  # diffusers / T5


def test_configs_still_name_models_through_the_package():
    from lightning_gen import models

    assert models.DDPM.__module__ == "lightning_gen.models.ddpm"
    assert set(models.__all__) <= set(dir(models))
    with pytest.raises(AttributeError):
        models.NoSuchModel  # noqa: B018


def test_a_quickstart_smoke_fit_loads_no_heavy_extra(floor, tmp_path):
    """A plain VAE needs none of them: not diffusers (the fitted diffusion prior's scheduler), not wandb before it logs."""
    modules, ours = loaded(
        "fit", "--config", "configs/quickstart.yaml", "--trainer.fast_dev_run", "1", "--trainer.default_root_dir", str(tmp_path)
    )
    assert "lightning_gen.models.vae" in ours  # the fit really ran the model
    assert not heavy_beyond(modules, floor)
    assert "lightning_gen.models.denoising_prior" not in ours
