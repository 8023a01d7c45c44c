"""benchmarks/gpu.py: its table on CPU (--tiny), its FLOP counter against hand counts, its batch search, its GPU peaks."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu.py"
# Compile on CPU takes minutes for the UNets on a loaded machine; the eager modes exercise the same step.
MODES = ["fp32", "bf16-mixed"]


def load_script():
    """benchmarks/gpu.py as a module (registered first: its dataclasses look their module up)."""
    if "gpu_benchmark" not in sys.modules:
        spec = importlib.util.spec_from_file_location("gpu_benchmark", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules["gpu_benchmark"] = module
        spec.loader.exec_module(module)
    return sys.modules["gpu_benchmark"]


def parse_tables(output: str) -> dict[str, dict]:
    """{preset: {"batch": N, "rows": {mode: cells}}} from the printed tables."""
    tables: dict[str, dict] = {}
    current = None
    for line in output.splitlines():
        header = re.match(r"^(\w+) \(configs/[\w.]+\): \w+, .* batch (\d+), (\d+)×\d+, on (.+)$", line)
        if header:
            current = tables.setdefault(header.group(1), {"batch": int(header.group(2)), "device": header.group(4), "rows": {}})
        elif current is not None and line.startswith("| ") and not line.startswith(("| mode", "| ---")):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            current["rows"][cells[0]] = cells
    return tables


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_bench") / "results.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--presets", "quickstart", "--modes", ",".join(MODES)]
    result = subprocess.run([*command, "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, json.loads(out.read_text())


def test_the_tiny_cpu_table_has_a_row_per_preset_and_mode_with_consistent_numbers(tiny_run):
    output, results = tiny_run
    tables = parse_tables(output)
    assert list(tables) == ["quickstart"]
    table = tables["quickstart"]
    assert table["batch"] == 4 and table["device"].startswith("CPU")
    assert list(table["rows"]) == MODES
    for mode, (_, images_per_second, step_ms, memory, gflop, mfu) in table["rows"].items():
        images_per_second, step_ms = float(images_per_second), float(step_ms)
        assert images_per_second > 0
        # images/s = batch / step time, up to the printed rounding (0.05 images/s, 0.0005 ms)
        expected = table["batch"] * 1000 / step_ms
        assert abs(images_per_second - expected) <= 0.05 + expected * 0.0005 / step_ms, mode
        assert memory == "n/a" and mfu == "n/a"  # no GPU memory figure and no peak FLOP/s on a CPU
        assert float(gflop) == pytest.approx(results["presets"][0]["flops_per_step"] / 1e9, rel=1e-3)
    assert [row["mode"] for row in results["presets"][0]["rows"]] == MODES


def test_the_flops_of_the_quickstart_vae_are_its_convolutions_and_linears():
    # An independent count of the tiny VAE's training step: hand formulas over the shapes its layers see.
    script = load_script()
    built = script.build_preset(script.PRESETS["quickstart"], tiny=True, workdir=Path("unused"))
    model, batch_size = built.model, built.batch_size
    forward = 0
    shapes = {}

    def record(module, inputs, output):
        shapes[module] = (inputs[0].shape, output.shape)

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    with torch.no_grad():
        model.losses(script.synthetic_batch(model, built.captions, batch_size, torch.device("cpu")), sample_latent=True)
    for hook in hooks:
        hook.remove()
    first_layer = None
    for module, (input_shape, output_shape) in shapes.items():
        if isinstance(module, nn.Linear):
            forward += 2 * input_shape[:-1].numel() * module.in_features * module.out_features
        elif isinstance(module, nn.Conv2d):
            kernel = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            forward += 2 * output_shape.numel() * kernel
        else:  # a transposed conv costs what the conv it transposes costs, counted over its input
            kernel = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
            forward += 2 * input_shape.numel() * kernel
        if first_layer is None:
            first_layer = (module, 2 * output_shape.numel() * module.kernel_size[0] * module.kernel_size[1] * module.in_channels)
    # Training: forward, then the gradient of every layer's weight and input (2 × forward), except the input gradient
    # of the first layer, whose input is the batch.
    expected = 3 * forward - first_layer[1]
    assert script.flops_per_step(built, torch.device("cpu")) == expected


def test_flop_count_of_one_linear_layer_equals_the_hand_count():
    script = load_script()
    batch, inputs, outputs = 3, 5, 7
    layer = nn.Linear(inputs, outputs)
    x = torch.randn(batch, inputs, requires_grad=True)

    def step():
        layer(x).sum().backward()

    assert script.count_training_flops(step) == 3 * 2 * batch * inputs * outputs  # forward, grad of input, grad of weight
    x.requires_grad_(False)
    assert script.count_training_flops(step) == 2 * 2 * batch * inputs * outputs  # no gradient of the batch itself
    with torch.no_grad():
        assert script.count_training_flops(lambda: layer(x)) == 2 * batch * inputs * outputs


@pytest.mark.parametrize("threshold", [0, 1, 3, 4, 5, 37, 63])
def test_the_largest_fitting_batch_is_found_by_doubling_then_bisection(threshold):
    script = load_script()
    tried = []

    def fits(batch_size):
        tried.append(batch_size)
        return batch_size <= threshold

    assert script.largest_fitting(fits, start=4, limit=1000) == threshold
    assert len(tried) <= 2 * 8  # log2 steps each way, not a linear scan


def test_the_batch_search_stops_at_its_limit():
    script = load_script()
    assert script.largest_fitting(lambda batch_size: True, start=4, limit=100) == 64  # 128 is over the limit, never tried


@pytest.mark.parametrize(
    ("name", "dtype", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16", 989.4),
        ("NVIDIA H100 PCIe", "bf16", 756.0),
        ("NVIDIA H200", "fp32", 66.9),
        ("NVIDIA A100-SXM4-80GB", "tf32", 156.0),
        ("NVIDIA L4", "bf16", 121.0),
        ("NVIDIA L40S", "bf16", None),  # not an L4: unknown, so MFU is n/a rather than wrong
        ("Tesla T4", "bf16", None),
        ("Tesla T4", "fp16", 65.0),
        ("NVIDIA GeForce RTX 4090", "bf16", 165.2),
        ("NVIDIA GeForce RTX 3090", "fp32", 35.6),
    ],
)
def test_peak_flops_are_looked_up_by_the_device_name(name, dtype, expected):
    assert load_script().gpu_peak_tflops(name, dtype) == expected


def test_modes_parse_into_precision_and_flags():
    script = load_script()
    mode = script.Mode.parse("bf16-mixed+compile+channels_last")
    assert (mode.precision, mode.compile, mode.channels_last, mode.autocast_dtype) == ("bf16-mixed", True, True, torch.bfloat16)
    assert mode.name == "bf16-mixed+compile+channels_last"
    with pytest.raises(SystemExit, match="not PRECISION"):
        script.Mode.parse("fp8+compile")
