"""The hand-written code replaced by a library gives today's numbers: WarmupCosine's LR curve (transformers' cosine)
and precision/recall (torch-fidelity), each against the old formula written out here."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_gen.metrics.formulas import precision_recall
from lightning_gen.models.schedules import WarmupCosine


def old_factor(step: int, warmup: int, total: int | None, min_ratio: float, time_progress: float = 0.0) -> float:
    """WarmupCosine.factor as it was written before transformers' cosine (commit 182bdd2)."""
    ramp = (step + 1) / warmup if step < warmup else 1.0
    step_progress = (step - warmup) / max(1, total - warmup) if total is not None else 0.0
    progress = min(1.0, max(0.0, step_progress, time_progress))
    if progress <= 0.0:
        return ramp
    decay = min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return min(ramp, decay)


@pytest.mark.parametrize(("warmup", "total", "min_ratio"), [(0, 50, 0.0), (10, 100, 0.1), (7, 33, 0.5), (5, 5, 0.0), (3, 40, 1.0)])
def test_warmup_cosine_is_the_same_curve_at_every_step(warmup, total, min_ratio):
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.3)
    scheduler = WarmupCosine(optimizer, warmup_steps=warmup, total_steps=total, min_lr_ratio=min_ratio)
    for step in range(total + 20):  # past the end too: the rate stays at its floor
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.3 * old_factor(step, warmup, total, min_ratio), abs=1e-12, rel=0)
        optimizer.step()
        scheduler.step()


def test_warmup_cosine_follows_the_time_progress_as_before():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = WarmupCosine(optimizer, warmup_steps=4, total_steps=None, min_lr_ratio=0.2)
    spent = {"fraction": 0.0}
    scheduler.follow_time(lambda: spent["fraction"])
    for step in range(30):
        spent["fraction"] = step / 17  # time runs out before the steps would: the floor from step 17 on
        expected = old_factor(step, 4, None, 0.2, time_progress=step / 17)
        assert scheduler.factor(step) == pytest.approx(expected, abs=1e-12, rel=0)
    scheduler.set_total_steps(25)  # both limits: the larger progress wins
    for step in range(30):
        spent["fraction"] = step / 40
        assert scheduler.factor(step) == pytest.approx(old_factor(step, 4, 25, 0.2, step / 40), abs=1e-12, rel=0)


def test_a_resumed_warmup_cosine_continues_the_same_curve():
    def run(stop: int | None) -> list[float]:
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        scheduler = WarmupCosine(optimizer, warmup_steps=5, total_steps=30, min_lr_ratio=0.05)
        rates = []
        for step in range(30):
            if step == stop:
                state = scheduler.state_dict()
                optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
                scheduler = WarmupCosine(optimizer, warmup_steps=5, total_steps=30, min_lr_ratio=0.05)
                scheduler.load_state_dict(state)
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return rates

    assert run(stop=12) == run(stop=None)
    assert run(None) == [pytest.approx(old_factor(step, 5, 30, 0.05), abs=1e-12) for step in range(30)]


def old_precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int, chunk: int) -> tuple[float, float]:
    """lightning_gen's own precision/recall before torch-fidelity's (commit 182bdd2), written out."""
    real, fake = real.double(), fake.double()

    def radii(features):
        return torch.cat(
            [torch.cdist(features[i : i + chunk], features).kthvalue(k + 1, dim=1).values for i in range(0, len(features), chunk)]
        )

    def inside(points, manifold, manifold_radii):
        return torch.cat(
            [(torch.cdist(points[i : i + chunk], manifold) <= manifold_radii[None]).any(dim=1) for i in range(0, len(points), chunk)]
        )

    precision = inside(fake, real, radii(real)).double().mean()
    recall = inside(real, fake, radii(fake)).double().mean()
    return float(precision), float(recall)


@pytest.mark.parametrize(("n_real", "n_fake", "k", "chunk"), [(300, 200, 3, 64), (150, 257, 5, 1024), (40, 40, 1, 7)])
def test_precision_recall_equals_the_old_implementation(n_real, n_fake, k, chunk):
    generator = torch.Generator().manual_seed(n_real + n_fake)
    real = torch.randn(n_real, 4, generator=generator)
    fake = 0.7 * torch.randn(n_fake, 4, generator=generator) + 0.4  # a shifted, narrower set: precision ≠ recall
    new = precision_recall(real, fake, k=k, chunk=chunk)
    old = old_precision_recall(real, fake, k, chunk)
    assert new == pytest.approx(old, abs=1e-6)
    assert 0.0 < new[0] < 1.0 and 0.0 < new[1] < 1.0 and new[0] != new[1]  # a case where either could be wrong


def test_precision_recall_on_a_hand_computed_case():
    # 1-D points: real {0, 1, 2, 3}, fake {0.5, 10, 11, 12}; k=1 radii: real 1 each, fake (9.5, 1, 1, 1).
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    fake = torch.tensor([[0.5], [10.0], [11.0], [12.0]])
    # precision: fake inside a real ball — only 0.5 → 1/4; recall: real inside a fake ball — 0.5's radius 9.5 holds all → 1.
    assert precision_recall(real, fake, k=1) == pytest.approx((0.25, 1.0), abs=1e-12)
