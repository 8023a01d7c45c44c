"""Config groups the CLI adds beside trainer/model/data: ``tracking``, ``checkpointing``, ``snapshots``, ``guard``, ``ema``,
``images``, ``performance``.

Each reads like a short list of hyperparameters in a YAML config, e.g.
``ema: {decay: 0.9995}`` or ``--checkpointing.every_n_steps 500`` on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class TrackingSettings:
    """Where a run is shown.

    Args:
        name: experiment name (the run directory's parent); default: the config file's stem.
        logger: ``wandb`` (default), ``tensorboard``, ``csv`` or ``none``.
        project: W&B project; runs of one sweep share it.
        group: W&B group so a sweep's runs sit side by side; default: the experiment name.
        wandb_mode: ``auto`` = online when WANDB_API_KEY (or a ``wandb login``) is present, else offline.
    """

    name: Optional[str] = None
    logger: Literal["wandb", "tensorboard", "csv", "none"] = "wandb"
    project: str = "lightning_gen"
    group: Optional[str] = None
    wandb_mode: Literal["auto", "online", "offline"] = "auto"


@dataclass
class CheckpointSettings:
    """What a run keeps on disk. ``last.ckpt`` (the full, resumable state) always, rewritten at every save and
    whenever a run ends (max_steps, max_time, Ctrl-C, SIGTERM, SIGUSR1, an exception).

    Args:
        monitor: metric that ranks the best-k checkpoints.
        mode: ``auto`` = ``max`` for metrics where higher is better (psnr, ssim, accuracy, precision, recall,
            judge scores, ...) and ``min`` otherwise (loss, fid, kid, lpips, ...); or ``min``/``max`` explicitly.
        save_top_k: best-k full checkpoints kept (0: none).
        every_n_steps: periodic full checkpoints every N optimizer steps (each as big as last.ckpt).
        every_n_minutes: periodic full checkpoints every N minutes of training.
        keep_periodic: newest periodic full checkpoints kept (0: the periodic saves only refresh last.ckpt).
    """

    monitor: str = "val/loss"
    mode: Literal["auto", "min", "max"] = "auto"
    save_top_k: int = 3
    every_n_steps: Optional[int] = None
    every_n_minutes: Optional[float] = None
    keep_periodic: int = 20


@dataclass
class SnapshotSettings:
    """Weights-only snapshots for inference: the EMA weights (the raw ones without EMA) as one safetensors file,
    a fraction of a full checkpoint's size (no optimizer state, no second copy of the weights; bf16 halves it again).
    Load one with ``sample --ckpt_path <file>.safetensors`` or lightning_gen.checkpoints.load_model.

    Args:
        every_n_steps: a snapshot every N optimizer steps (none when unset).
        keep: newest snapshots kept (0 = all).
        dtype: ``bfloat16`` (half the size; what a sampler needs), ``float16`` or ``float32``.
    """

    every_n_steps: Optional[int] = None
    keep: int = 10
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"


@dataclass
class GuardSettings:
    """Non-finite losses and gradients never reach the weights: such a step is skipped (weights, optimizer and
    its moments unchanged), with a warning, and counted as ``train/skipped_nonfinite``.

    Args:
        enabled: switch the guard off with ``--guard.enabled false``.
        max_consecutive_nonfinite: the run stops (last.ckpt keeps the last good weights) after this many
            skipped steps in a row.
    """

    enabled: bool = True
    max_consecutive_nonfinite: int = 20


@dataclass
class EMASettings:
    """Exponential moving average of the weights (Lightning's WeightAveraging); validation, grids and ``sample`` use it.

    Args:
        enabled: switch EMA off with ``--ema.enabled false``.
        decay: the target decay.
        warmup: use decay_t = min(decay, (1 + t) / (10 + t)) so early EMA weights do not keep the random init.
        post_hoc: also keep power-function EMA tracks (EDM2's post-hoc EMA), so that ``sample``/``evaluate
            --ema_sigma_rel`` rebuild an EMA of any length after training; runs beside (or without) the EMA above.
        sigma_rels: the tracked EMA lengths (relative standard deviations, at least two).
        snapshot_every_n_steps: a snapshot of each track every N optimizer steps in ``<run>/posthoc_ema/``.
        snapshot_dtype: ``bfloat16`` (2 bytes a weight), ``float16`` or ``float32``.
    """

    enabled: bool = True
    decay: float = 0.999
    warmup: bool = True
    post_hoc: bool = False
    sigma_rels: list[float] = field(default_factory=lambda: [0.05, 0.10])
    snapshot_every_n_steps: int = 500
    snapshot_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"


@dataclass
class ImageSettings:
    """Validation grids (fixed images and fixed noise, so validations compare), and the validations a fit runs
    beyond its trainer cadence (``check_val_every_n_epoch``) so that every run shows metrics and grids.
    Under ``fast_dev_run`` the grids are tiny (2 images, 2 denoising steps), so a smoke run stays quick.

    ``edit_attributes`` (models with latents, data with attributes): one ``edit_<name>`` grid each, the fixed
    images (rows) moved along the attribute's direction by each of ``edit_strengths`` (columns); directions
    from up to ``edit_references`` validation images, recomputed every time (the model changes); each image's
    own direction from its ``edit_neighbours`` nearest references (0: one global direction, seed 001).

    Args:
        every_n_epochs: grids at every N-th validation epoch, and always at the final and the requested validations.
        every_n_minutes: validate (metrics and grids) when this many minutes of training have passed since the last
            validation, mid-epoch too; null or 0: only the trainer's cadence.
        validate_at_end: the run's last step validates (metrics, grids, best-k) whatever limit ended it (max_epochs,
            max_steps, max_time, early stopping), unless it validated anyway; a signal or an exception does not.
        num_images: images per grid row (reconstructions, samples).
        interpolation_pairs: rows of the interpolation grid.
        interpolation_steps: columns between each pair's endpoints.
        seed: the grids' noise seed, the same at every validation.
        edit_attributes: attributes with an ``edit_<name>`` grid each.
        edit_strengths: the edit grids' columns.
        edit_references: validation images the attribute directions are computed from.
        edit_neighbours: nearest references per image's own direction (0: one global direction).
    """

    every_n_epochs: int = 1
    every_n_minutes: Optional[float] = 30.0
    validate_at_end: bool = True
    num_images: int = 8
    interpolation_pairs: int = 4
    interpolation_steps: int = 8
    seed: int = 1234
    edit_attributes: list[str] = field(default_factory=list)
    edit_strengths: list[float] = field(default_factory=lambda: [-2.0, -1.0, 0.0, 1.0, 2.0])
    edit_references: int = 512
    edit_neighbours: int = 16


@dataclass
class PerformanceSettings:
    """Speed options for a GPU, each off by default (cuDNN's algorithm search is ``--trainer.benchmark true``).

    Args:
        compile: torch.compile the model's trainable networks (its child modules with trainable parameters: the
            UNet, the encoder and decoder), not the LightningModule; compiled in place, so checkpoints keep their
            keys and load without compile.
        channels_last: the networks' weights and the batches' images in channels_last memory format (faster
            convolutions on tensor cores, with bf16-mixed / 16-mixed above all).
        matmul_precision: float32 matrix products, set once with torch.set_float32_matmul_precision before the
            Trainer starts: ``highest`` (exact fp32, torch's default), ``high`` (TF32 on Ampere and newer GPUs) or
            ``medium`` (bf16 passes).
    """

    compile: bool = False
    channels_last: bool = False
    matmul_precision: Literal["highest", "high", "medium"] = "highest"


# The groups the CLI adds beside trainer/model/data, for fit and every command alike.
SETTINGS = {
    "tracking": TrackingSettings,
    "checkpointing": CheckpointSettings,
    "snapshots": SnapshotSettings,
    "guard": GuardSettings,
    "ema": EMASettings,
    "images": ImageSettings,
    "performance": PerformanceSettings,
}
