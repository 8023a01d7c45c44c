"""Post-hoc EMA (EDM2, Karras et al. 2024): power-function EMA tracks, their snapshots, and any EMA length rebuilt after training.

A power-function EMA of exponent γ averages the weights θ(τ) of steps τ ≤ t with a weight ∝ τ^γ; its relative
standard deviation σ_rel (the EMA's length as a fraction of training) is sqrt((γ+1) / ((γ+2)² (γ+3))). A run
keeps two such tracks (``ema.sigma_rels``, by default 0.05 and 0.10) and writes a snapshot of each every N steps
into ``<run>/posthoc_ema/``. Any other σ_rel at a snapshot's step is a linear combination of the stored snapshots,
whose coefficients solve the least-squares problem between the power-function profiles (the paper's Algorithm 3).

The profile math (σ_rel → γ, the profiles' inner products) is lucidrains' ema-pytorch (MIT); its classes deep-copy
the model and torch.save into a folder, so the tracks (callbacks/posthoc_ema.py) and the snapshot files (the
safetensors weight snapshots of checkpoints/snapshots.py, with the step and γ in their metadata) are ours.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from ema_pytorch.post_hoc_ema import p_dot_p
from ema_pytorch.post_hoc_ema import sigma_rel_to_gamma as _sigma_rel_to_gamma
from safetensors import safe_open

from lightning_gen.checkpoints.snapshots import load_weight_snapshot
from lightning_gen.errors import UserError
from lightning_gen.models.base import GenerativeModel

FOLDER = "posthoc_ema"
METADATA_KEY = "lightning_gen_posthoc_ema"
# σ_rel(γ) rises from 0 at γ = -1 to about 0.2887 at γ = 0 (the plain running mean); EDM2's useful range is well below.
MAX_SIGMA_REL = 0.28


def gamma_to_sigma_rel(gamma: float) -> float:
    """The paper's closed form (EDM2, eq. 3 and Appendix C.1)."""
    return math.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3)))


def sigma_rel_to_gamma(sigma_rel: float) -> float:
    """γ of the power-function EMA with relative standard deviation ``sigma_rel`` (the largest real root of the cubic)."""
    if not 0 < sigma_rel <= MAX_SIGMA_REL:
        raise UserError(f"EMA sigma_rel {sigma_rel} is out of range; pick one in (0, {MAX_SIGMA_REL}] (EDM2 uses 0.05 to 0.2).")
    return float(_sigma_rel_to_gamma(sigma_rel))


def power_ema_beta(gamma: float, step: int) -> float:
    """The decay at update number ``step`` (1-based): β_t = (1 - 1/t)^(γ+1); β_1 = 0, so the first update copies."""
    return (1.0 - 1.0 / step) ** (gamma + 1.0)


def parse_sigma_rels(text: str | float) -> list[float]:
    """``"0.05,0.1,0.15"`` (the ``--ema_sigma_rel`` option) as numbers, each checked."""
    try:
        values = [float(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--ema_sigma_rel {text} is not a comma-separated list of numbers; pass e.g. 0.05,0.1,0.15.") from None
    if not values:
        raise UserError("--ema_sigma_rel is empty; pass one or more numbers, e.g. 0.05,0.1,0.15.")
    for value in values:
        sigma_rel_to_gamma(value)
    return values


@dataclass(frozen=True)
class PosthocSnapshot:
    path: Path
    step: int
    gamma: float
    sigma_rel: float
    tracked: tuple[str, ...]  # the state-dict names averaged by the tracks; the others were copied from the model


def snapshot_name(sigma_rel: float, step: int) -> str:
    return f"sigma{sigma_rel:.4f}-step{step:08d}.safetensors"


def snapshot_metadata(step: int, gamma: float, sigma_rel: float, tracked: Sequence[str]) -> dict[str, str]:
    return {METADATA_KEY: json.dumps({"step": step, "gamma": gamma, "sigma_rel": sigma_rel, "tracked": list(tracked)})}


def posthoc_folder(path: str | Path) -> Path:
    """The ``posthoc_ema`` folder of a run, from that folder, the run directory or any file of the run's ``checkpoints/``."""
    path = Path(path)
    candidates = [path] if path.name == FOLDER else [path / FOLDER] if path.is_dir() else [path.parent.parent / FOLDER]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise UserError(
        f"{path} has no {FOLDER}/ folder of post-hoc EMA snapshots; pass a checkpoint or the directory of a run "
        f"trained with --ema.post_hoc true."
    )


def list_snapshots(path: str | Path) -> list[PosthocSnapshot]:
    """Every post-hoc snapshot of a run, ordered by step and γ."""
    folder = posthoc_folder(path)
    snapshots = []
    for file in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt") as opened:
                info = json.loads((opened.metadata() or {})[METADATA_KEY])
        except Exception as error:
            raise UserError(
                f"could not read post-hoc EMA snapshot {file} ({type(error).__name__}: {error}); remove it or pass another run."
            ) from error
        snapshots.append(PosthocSnapshot(file, int(info["step"]), float(info["gamma"]), float(info["sigma_rel"]), tuple(info["tracked"])))
    if not snapshots:
        raise UserError(f"{folder} holds no post-hoc EMA snapshots yet; train past --ema.snapshot_every_n_steps first.")
    return sorted(snapshots, key=lambda snapshot: (snapshot.step, snapshot.gamma))


def solve_coefficients(snapshots: Sequence[PosthocSnapshot], gamma: float, step: int) -> torch.Tensor:
    """Coefficients x (float64, one per snapshot) with Σ x_i p_i closest, in L2, to the profile of (γ, step).

    Least squares (as the paper) rather than ema-pytorch's exact solve: the Gram matrix of many snapshots is
    ill-conditioned, and the SVD-based solver keeps the exact answer for a stored (γ, step) to float64 precision.
    """
    t_i = torch.tensor([float(s.step) for s in snapshots], dtype=torch.float64)
    gamma_i = torch.tensor([s.gamma for s in snapshots], dtype=torch.float64)
    t_r = torch.tensor([[float(step)]], dtype=torch.float64)
    gamma_r = torch.tensor([[gamma]], dtype=torch.float64)
    gram = p_dot_p(t_i[:, None], gamma_i[:, None], t_i[None, :], gamma_i[None, :])
    target = p_dot_p(t_i[:, None], gamma_i[:, None], t_r, gamma_r)
    return torch.linalg.lstsq(gram, target, driver="gelsd").solution.squeeze(-1)


def synthesize(path: str | Path, sigma_rel: float, step: int | None = None) -> tuple[dict[str, torch.Tensor], PosthocSnapshot]:
    """The tracked weights of the EMA of length ``sigma_rel`` at ``step`` (default: the newest snapshot's), in float32,
    and the newest snapshot at or before that step (its untracked tensors — buffers, frozen weights — go with them)."""
    snapshots = list_snapshots(path)
    newest = snapshots[-1].step
    step = newest if step is None else step
    usable = [snapshot for snapshot in snapshots if snapshot.step <= step]
    if not usable or step > newest:
        raise UserError(f"post-hoc EMA can be rebuilt at steps {snapshots[0].step} to {newest} of this run, not {step}.")
    coefficients = solve_coefficients(usable, sigma_rel_to_gamma(sigma_rel), step)
    base = usable[-1]
    weights: dict[str, torch.Tensor] = {}
    for snapshot, coefficient in zip(usable, coefficients.tolist()):
        with safe_open(str(snapshot.path), framework="pt") as opened:
            for name in base.tracked:
                tensor = opened.get_tensor(name).float()
                if name in weights:
                    weights[name].add_(tensor, alpha=coefficient)
                else:
                    weights[name] = tensor.mul_(coefficient)
    return weights, base


def load_posthoc_model(path: str | Path, sigma_rel: float, device: str | torch.device = "cpu", step: int | None = None) -> GenerativeModel:
    """The run's model (class, hyperparameters and data facts from a snapshot) with the synthesized EMA weights."""
    weights, base = synthesize(path, sigma_rel, step)
    model = load_weight_snapshot(base.path, "cpu")  # the model, its buffers and extra state at that step
    state = model.state_dict()
    model.load_state_dict({**state, **{name: weights[name].to(state[name].dtype) for name in weights}})
    return model.to(device).eval()


def score_sigma_rels(
    path: str | Path, sigma_rels: Sequence[float], device: str | torch.device, score: Callable[[GenerativeModel], dict[str, float]]
) -> list[tuple[float, dict[str, float]]]:
    """``score(model)`` for the EMA of each length, rebuilt one after another (one model in memory at a time)."""
    return [(sigma_rel, score(load_posthoc_model(path, sigma_rel, device))) for sigma_rel in sigma_rels]


def format_sigma_rel_table(rows: Sequence[tuple[float, dict[str, float]]]) -> str:
    """One row per σ_rel, one column per score (the union of every row's keys, in first-seen order)."""
    columns = list(dict.fromkeys(key for _, row in rows for key in row))
    widths = [max(len(column), 10) for column in columns]
    lines = ["  ".join(["sigma_rel", *(column.rjust(width) for column, width in zip(columns, widths))])]
    for sigma_rel, row in rows:
        cells = [f"{row[column]:.4g}" if column in row else "-" for column in columns]
        lines.append("  ".join([f"{sigma_rel:<9.4g}", *(cell.rjust(width) for cell, width in zip(cells, widths))]))
    return "\n".join(lines)
