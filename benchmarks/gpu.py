"""Training throughput of the presets on one GPU: images/s, step time, peak memory and model FLOPs utilisation.

    python benchmarks/gpu.py                                  # every preset, every mode, on cuda (≤ 5 minutes on one GPU)
    python benchmarks/gpu.py --presets imagen --modes bf16-mixed,bf16-mixed+compile --out results.json
    python benchmarks/gpu.py --device cpu --tiny              # the same code on tiny shapes (a check, not a measurement)

Each preset's model is built from its config through jsonargparse, as ``fit`` builds it (data facts from the config's
datamodule, which reads no files for these presets; folder_ddpm's ten digit classes are given, since its datamodule
lists a folder). Batches are synthetic, of the config's batch size and shape, already on the device. A step is
forward (the model's own ``training_step``, under autocast for the mixed modes), backward, the config's gradient
clipping and the optimizer step; the LR schedule is left out (it needs a Trainer, and costs nothing). Warm-up steps
(which include compilation) are not timed; the timed steps are bracketed by ``torch.cuda.synchronize``.

A mode is a precision (``fp32``: strict float32, matmuls and cuDNN convolutions; ``tf32``: float32 with matmul precision
"high" and cuDNN's TF32, i.e. TF32 tensor cores on Ampere+ — ``32-true`` with torch's defaults lies between the two;
``bf16-mixed``; ``16-mixed``, with a GradScaler) plus optional ``+compile`` (``nn.Module.compile`` of the trainable
networks, as ``--performance.compile`` does) and ``+channels_last`` (networks and images, as
``--performance.channels_last``). FLOPs per step are counted once per preset by ``torch.utils.flop_counter.FlopCounterMode``
on an eager step (matmuls, convolutions and attention; forward and backward); MFU = FLOPs / step time / the device's
dense peak for the mode's dtype (table below, "n/a" where unknown).

The Imagen preset uses a random T5 encoder of T5 v1.1 large's width (d_model 1024) built locally: the UNet sees
only the width, and caption embeddings are cached before timing, so the encoder's depth (2 layers here) does not
enter any timed step. On cuda the Imagen preset's largest training batch that fits in memory is also searched
(bf16-mixed, eager: doubling from the config's batch, then bisection; an out-of-memory step is caught and freed).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import re
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from jsonargparse import ArgumentParser  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from lightning_gen.callbacks.performance import channels_last_images, trainable_networks  # noqa: E402
from lightning_gen.config.trust import read_config  # noqa: E402
from lightning_gen.facts import DataFacts  # noqa: E402
from lightning_gen.inference.datamodules import datamodule_from_config  # noqa: E402
from lightning_gen.models.base import GenerativeModel  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODES = ("fp32", "tf32", "bf16-mixed", "bf16-mixed+compile", "bf16-mixed+compile+channels_last")
PRECISIONS = ("fp32", "tf32", "bf16-mixed", "16-mixed")
TFLOPS = 1e12

# Dense peak TFLOP/s (no structured sparsity) per GPU: fp32 (CUDA cores), tf32 / bf16 / fp16 (tensor cores, fp32 accumulate).
# Sources: NVIDIA H100 datasheet (SXM: 67 / 494.7 / 989.4; PCIe: 51 / 378 / 756 — the sheet's figures with sparsity halved);
# NVIDIA H200 datasheet (SXM, same compute as H100 SXM); NVIDIA A100 datasheet (19.5 / 156 / 312); NVIDIA L4 datasheet
# (30.3 / 60 / 121); NVIDIA T4 datasheet (8.1 fp32, 65 fp16 mixed; no tf32 or bf16 tensor cores); NVIDIA Ada GPU
# architecture whitepaper, RTX 4090 (82.6 / 82.6 / 165.2 with fp32 accumulate); NVIDIA Ampere GA102 whitepaper,
# RTX 3090 (35.6 / 35.6 / 71).
PEAK_TFLOPS: dict[str, dict[str, float | None]] = {
    "H200": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},
    "H100 PCIe": {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0},
    "H100": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},  # SXM (HBM3), the H100 without "PCIe" in its name
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0},
    "L4": {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0},
    "T4": {"fp32": 8.1, "tf32": None, "bf16": None, "fp16": 65.0},
    "RTX 4090": {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2},
    "RTX 3090": {"fp32": 35.6, "tf32": 35.6, "bf16": 71.0, "fp16": 71.0},
}


@dataclass(frozen=True)
class Preset:
    config: str
    full: dict[str, Any] = field(default_factory=dict)  # model init_args overrides for the GPU run (none: as shipped)
    tiny: dict[str, Any] = field(default_factory=dict)  # model init_args overrides of --tiny
    image_size: int | None = None  # None: the config's
    class_names: tuple[str, ...] | None = None  # None: the config's datamodule's facts
    search_max_batch: bool = False


TINY_VAE = {"channels": [8, 16], "latent_dim": 8}
PRESETS = {
    "quickstart": Preset("configs/quickstart.yaml", tiny=TINY_VAE),
    "cats_beta0005": Preset("configs/cats_beta0005.yaml", tiny=TINY_VAE),
    "folder_ddpm": Preset(
        "configs/folder_ddpm.yaml",
        tiny={"unet": {"block_out_channels": [8, 16, 16], "norm_num_groups": 4, "attention_head_dim": 8}},
        image_size=64,
        class_names=tuple(str(digit) for digit in range(10)),  # the digits its comment trains on
    ),
    "imagen": Preset(
        "configs/nabirds_imagen.yaml",
        tiny={"unet": {"block_out_channels": [8, 8, 16, 16], "layers_per_block": [1, 1, 1, 1], "norm_num_groups": 4}},
        search_max_batch=True,
    ),
}


@dataclass(frozen=True)
class Mode:
    precision: str
    compile: bool
    channels_last: bool

    @classmethod
    def parse(cls, name: str) -> Mode:
        precision, *flags = name.split("+")
        unknown = [flag for flag in flags if flag not in ("compile", "channels_last")]
        if precision not in PRECISIONS or unknown:
            raise SystemExit(f"mode '{name}' is not PRECISION[+compile][+channels_last] with PRECISION one of {', '.join(PRECISIONS)}")
        return cls(precision, "compile" in flags, "channels_last" in flags)

    @property
    def name(self) -> str:
        return "+".join([self.precision, *(["compile"] if self.compile else []), *(["channels_last"] if self.channels_last else [])])

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(self.precision)

    @property
    def peak_key(self) -> str:
        return {"fp32": "fp32", "tf32": "tf32", "bf16-mixed": "bf16", "16-mixed": "fp16"}[self.precision]


def gpu_peak_tflops(device_name: str, dtype_key: str) -> float | None:
    """The dense peak of a known GPU for ``dtype_key`` (fp32, tf32, bf16, fp16); None for an unknown GPU or dtype."""
    for name, peaks in PEAK_TFLOPS.items():
        if re.search(r"\b" + r"\s*".join(map(re.escape, name.split())) + r"\b", device_name, flags=re.IGNORECASE):
            return peaks[dtype_key]
    return None


def count_training_flops(step: Callable[[], Any]) -> int:
    """FLOPs of one call of ``step`` (forward and backward) as torch.utils.flop_counter counts them."""
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def largest_fitting(fits: Callable[[int], bool], start: int, limit: int) -> int:
    """The largest batch in [1, limit] for which ``fits`` is true, assuming it is true up to a threshold and false above:
    doubling from ``start`` to the first failure, then bisection. 0 when not even batch 1 fits."""
    low, high, batch = 0, None, max(1, start)
    while batch <= limit:
        if not fits(batch):
            high = batch
            break
        low, batch = batch, batch * 2
    if high is None:
        return low
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


# -- building a preset --------------------------------------------------------------------------------------------
def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in overrides.items():
        result[key] = merged(result[key], value) if isinstance(value, dict) and isinstance(result.get(key), dict) else value
    return result


def data_facts(preset: Preset, config: dict[str, Any], image_size: int) -> DataFacts:
    if preset.class_names is not None:
        return DataFacts(image_size=image_size, channels=3, class_names=preset.class_names)
    data = merged(config["data"], {"init_args": {"image_size": image_size}})
    return datamodule_from_config(data, preset.config).facts


def captions_of(config: dict[str, Any], facts: DataFacts) -> list[str]:
    template = config["data"].get("init_args", {}).get("caption_template", "a photo of a {name}")
    return [template.format(name=name) for name in facts.class_names] or ["a photo"]


def build_model(model_section: dict[str, Any], facts: DataFacts) -> GenerativeModel:
    """The config's model section as jsonargparse instantiates it for fit, with the data facts fit would link in."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(GenerativeModel, "model", required=True)
    section = merged(model_section, {"init_args": {"data_facts": facts.to_dict()}})
    section["init_args"].pop("lr_scheduler", None)  # needs a Trainer for the run's length; not part of the step's cost
    torch.manual_seed(0)
    return parser.instantiate_classes(parser.parse_object({"model": section})).model


@dataclass
class Built:
    model: GenerativeModel
    batch_size: int
    image_size: int
    captions: list[str]
    gradient_clip_val: float | None


def build_preset(preset: Preset, tiny: bool, workdir: Path) -> Built:
    config = read_config(REPO / preset.config)
    data_args = config["data"].get("init_args", {})
    image_size = 16 if tiny else preset.image_size or data_args.get("image_size", 64)
    facts = data_facts(preset, config, image_size)
    model_section = merged(config["model"], {"init_args": preset.tiny if tiny else preset.full})
    captions = captions_of(config, facts)
    if model_section["init_args"].get("conditioning") == "text":
        from lightning_gen.text.tiny_t5 import build_tiny_t5

        encoder = build_tiny_t5(workdir / "t5", captions, d_model=32 if tiny else 1024, num_heads=4 if tiny else 16)
        model_section = merged(model_section, {"init_args": {"text_encoder": str(encoder), "text_cache_dir": str(workdir / "text")}})
    model = build_model(model_section, facts)
    batch_size = 4 if tiny else int(data_args.get("batch_size", 64))
    clip = config.get("trainer", {}).get("gradient_clip_val")
    return Built(model, batch_size, image_size, captions, clip)


def synthetic_batch(model: GenerativeModel, captions: list[str], batch_size: int, device: torch.device) -> dict[str, Any]:
    """A batch of the data's shape and keys (labels, attributes, captions where the data has them), on ``device``."""
    facts = model.data_facts
    generator = torch.Generator().manual_seed(1)
    batch: dict[str, Any] = {
        "image": torch.rand(batch_size, *model.image_shape, generator=generator),
        "index": torch.arange(batch_size),
    }
    if facts.class_names:
        batch["label"] = torch.randint(len(facts.class_names), (batch_size,), generator=generator)
    if facts.attribute_names:
        batch["attributes"] = torch.randint(2, (batch_size, len(facts.attribute_names)), generator=generator).float()
    if facts.has_captions:
        batch["caption"] = [captions[index % len(captions)] for index in range(batch_size)]
    return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


# -- one mode -----------------------------------------------------------------------------------------------------
class Trainee:
    """A copy of the built model on the device in one mode, with its optimizer, and a manual training step."""

    def __init__(self, built: Built, mode: Mode, device: torch.device):
        self.model = copy.deepcopy(built.model).to(device).train()
        self.mode = mode
        self.device = device
        self.clip = built.gradient_clip_val
        for network in trainable_networks(self.model).values():
            if mode.channels_last:
                network.to(memory_format=torch.channels_last)
            if mode.compile:
                network.compile()
        configured = self.model.configure_optimizers()
        self.optimizer = configured["optimizer"] if isinstance(configured, dict) else configured
        self.scaler = torch.amp.GradScaler(device.type) if mode.precision == "16-mixed" else None

    def batch(self, built: Built, batch_size: int) -> dict[str, Any]:
        batch = synthetic_batch(self.model, built.captions, batch_size, self.device)
        if self.mode.channels_last:
            channels_last_images(batch)
        return batch

    def step(self, batch: dict[str, Any]) -> None:
        dtype = self.mode.autocast_dtype
        with torch.autocast(self.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = self.model.training_step(batch, 0)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure(built: Built, mode: Mode, device: torch.device, warmup: int, steps: int) -> dict[str, Any]:
    torch.set_float32_matmul_precision("high" if mode.precision == "tf32" else "highest")
    # fp32 is strict fp32 (cuDNN too, whose convolutions default to TF32 on Ampere+), so its MFU is against the fp32 peak.
    torch.backends.cudnn.allow_tf32 = mode.precision != "fp32"
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainee = Trainee(built, mode, device)
    batch = trainee.batch(built, built.batch_size)
    for _ in range(warmup):
        trainee.step(batch)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        trainee.step(batch)
    synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    del trainee, batch
    if mode.compile:
        torch.compiler.reset()
    free(device)
    return {"mode": mode.name, "step_seconds": seconds, "images_per_second": built.batch_size / seconds, "peak_memory_bytes": peak}


def flops_per_step(built: Built, device: torch.device) -> int:
    """One eager fp32 step counted (after one uncounted step, which encodes and caches the captions)."""
    torch.set_float32_matmul_precision("highest")
    trainee = Trainee(built, Mode("fp32", False, False), device)
    batch = trainee.batch(built, built.batch_size)
    trainee.step(batch)
    return count_training_flops(lambda: trainee.step(batch))


def max_batch(built: Built, device: torch.device, limit: int) -> int:
    trainee = Trainee(built, Mode("bf16-mixed", False, False), device)

    def fits(batch_size: int) -> bool:
        try:
            trainee.step(trainee.batch(built, batch_size))
            synchronize(device)
            out_of_memory = False
        except torch.OutOfMemoryError:
            out_of_memory = True  # freed below, once the exception (and the frames holding the activations) is gone
        if out_of_memory:
            trainee.optimizer.zero_grad(set_to_none=True)
        free(device)
        print(f"  batch {batch_size}: {'out of memory' if out_of_memory else 'fits'}", flush=True)
        return not out_of_memory

    return largest_fitting(fits, built.batch_size, limit)


# -- the table ----------------------------------------------------------------------------------------------------
def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return f"CPU: {names[0] if names else platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def row_cells(row: dict[str, Any], flops: int, name: str, device: torch.device) -> list[str]:
    peak_tflops = gpu_peak_tflops(name, Mode.parse(row["mode"]).peak_key) if device.type == "cuda" else None
    mfu = flops / row["step_seconds"] / (peak_tflops * TFLOPS) if peak_tflops else None
    row["mfu"] = mfu
    memory = "n/a" if row["peak_memory_bytes"] is None else f"{row['peak_memory_bytes'] / 2**30:.2f}"
    return [row["mode"], f"{row['images_per_second']:.1f}", f"{row['step_seconds'] * 1e3:.3f}", memory, f"{flops / 1e9:.4g}",
            "n/a" if mfu is None else f"{100 * mfu:.1f} %"]  # fmt: skip


def print_table(result: dict[str, Any], name: str, device: torch.device) -> None:
    print(
        f"\n{result['preset']} ({result['config']}): {result['model_class']}, {result['parameters'] / 1e6:.2f}M trainable parameters, "
        f"batch {result['batch_size']}, {result['image_size']}×{result['image_size']}, on {name}"
    )
    print("| mode | images/s | step (ms) | peak memory (GiB) | GFLOP/step | MFU |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for row in result["rows"]:
        print("| " + " | ".join(row_cells(row, result["flops_per_step"], name, device)) + " |", flush=True)
    if result.get("max_batch") is not None:
        print(f"largest bf16-mixed training batch that fits in memory: {result['max_batch']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--tiny", action="store_true", help="16×16 images, tiny channels, batch 4, 2 timed steps: a check of the script")
    parser.add_argument("--presets", default=",".join(PRESETS), help=f"comma-separated subset of {', '.join(PRESETS)}")
    parser.add_argument("--modes", default=",".join(DEFAULT_MODES), help="comma-separated PRECISION[+compile][+channels_last]")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per mode (default 3, --tiny 1)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per mode (default 10, --tiny 2)")
    parser.add_argument("--max-batch-limit", type=int, default=4096, help="largest batch the memory search tries")
    parser.add_argument("--no-max-batch", action="store_true", help="skip the Imagen preset's largest-batch search")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of torch with --device cpu (tiny ops run best on one)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device is visible; run on a GPU machine, or pass --device cpu --tiny to check the script")
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    presets = [name.strip() for name in args.presets.split(",") if name.strip()]
    unknown = [name for name in presets if name not in PRESETS]
    if unknown:
        raise SystemExit(f"unknown preset {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
    modes = [Mode.parse(name.strip()) for name in args.modes.split(",") if name.strip()]
    warmup = args.warmup if args.warmup is not None else 1 if args.tiny else 3
    steps = args.steps if args.steps is not None else 2 if args.tiny else 10
    warnings.filterwarnings("ignore", message=".*self.log.*")  # training_step logs; outside a Trainer that is a no-op
    warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\._dynamo")  # diffusers' lru_cache notes under compile
    name = device_name(device)
    print(f"benchmarks/gpu.py on {name}; torch {torch.__version__}; {warmup} warm-up + {steps} timed steps per mode"
          + ("; --tiny shapes" if args.tiny else ""), flush=True)  # fmt: skip
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for preset_name in presets:
            preset = PRESETS[preset_name]
            built = build_preset(preset, args.tiny, Path(workdir) / preset_name)
            result = {
                "preset": preset_name,
                "config": preset.config,
                "model_class": type(built.model).__name__,
                "parameters": sum(p.numel() for p in built.model.parameters() if p.requires_grad),
                "batch_size": built.batch_size,
                "image_size": built.image_size,
                "tiny": args.tiny,
                "flops_per_step": flops_per_step(built, device),
                "rows": [measure(built, mode, device, warmup, steps) for mode in modes],
                "max_batch": None,
            }
            if preset.search_max_batch and device.type == "cuda" and not args.no_max_batch:
                result["max_batch"] = max_batch(built, device, args.max_batch_limit)
                free(device)
            print_table(result, name, device)
            results.append(result)
            del built
            free(device)
    if args.out:
        args.out.write_text(json.dumps({"device": name, "torch": torch.__version__, "presets": results}, indent=2))


if __name__ == "__main__":
    main()
