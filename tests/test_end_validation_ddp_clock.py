"""Under DDP the every_n_minutes clock is rank 0's, broadcast at steps every rank knows beforehand, not at every step
(each broadcast is a collective that stalls both ranks; per step it cost DDP on CPU several ms)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

import lightning_gen.callbacks.end_validation as end_validation
from lightning_gen.callbacks.end_validation import TIME, ValidationRequests, ValidationTrigger
from lightning_gen.config.settings import ImageSettings

SECONDS_PER_STEP = 0.1
MINUTES = 10.0  # 6000 steps of 0.1 s


class PairedStrategy:
    """Two ranks' broadcasts: rank 0's call records its object, rank 1's (made next) returns it; every call is logged."""

    def __init__(self):
        self.calls: dict[int, list[int]] = {0: [], 1: []}
        self.sent = None

    def for_rank(self, rank: int, trainer: SimpleNamespace):
        def broadcast(obj, src=0):
            self.calls[rank].append(trainer.global_step)
            if rank == 0:
                self.sent = obj
                return obj
            return self.sent

        return SimpleNamespace(broadcast=broadcast)


def fake_trainer(world_size: int) -> SimpleNamespace:
    return SimpleNamespace(
        world_size=world_size,
        global_step=0,
        should_stop=False,
        max_steps=-1,
        max_epochs=None,
        num_training_batches=math.inf,
        check_val_every_n_epoch=1000,
        val_check_batch=1000,
        sanity_checking=False,
    )


def run(steps: int, clocks: list[float], world_size: int, monkeypatch: pytest.MonkeyPatch):
    """Steps each rank's trigger (rank r's clock is offset by clocks[r]); returns the steps each rank validated at and the strategy."""
    paired = PairedStrategy()
    ranks = []
    for rank, offset in enumerate(clocks):
        trainer = fake_trainer(world_size)
        trainer.strategy = paired.for_rank(rank, trainer)
        requests = ValidationRequests(ImageSettings(every_n_minutes=MINUTES, validate_at_end=False))
        ranks.append((trainer, requests, ValidationTrigger(requests), offset, []))
    for step in range(1, steps + 1):
        for trainer, requests, trigger, offset, validated in ranks:
            monkeypatch.setattr(end_validation, "now", lambda clock=step * SECONDS_PER_STEP + offset: clock)
            if step == 1:
                requests.on_train_start(trainer, None)
            requests.on_train_batch_start(trainer, None, None, step - 1)
            trainer.global_step = step
            trigger.on_train_batch_end(trainer, None, None, None, step - 1)
            if requests.reason == TIME:
                validated.append(step)
                requests.on_validation_start(trainer, None)
                requests.on_validation_end(trainer, None)
    return [validated for *_, validated in ranks], paired


def test_one_process_reads_its_clock_every_step_and_never_broadcasts(monkeypatch):
    (validated,), paired = run(13_000, [0.0], world_size=1, monkeypatch=monkeypatch)
    assert validated == [6001, 12001]  # the first step 10 minutes after the start (step 1) and after that validation
    assert paired.calls[0] == []


def test_ddp_ranks_broadcast_about_a_hundred_times_an_interval_and_validate_at_the_same_steps(monkeypatch):
    # Rank 1's clock runs 30 s ahead: alone it would validate 300 steps early; rank 0's clock decides for both.
    (rank0, rank1), paired = run(13_000, [0.0, 30.0], world_size=2, monkeypatch=monkeypatch)
    assert paired.calls[0] == paired.calls[1]  # the same collective calls at the same steps: no rank waits forever
    assert rank0 == rank1
    checks_per_interval = 13_000 / 6000 * end_validation.TIME_CHECKS_PER_INTERVAL
    assert len(paired.calls[0]) < 1.2 * checks_per_interval + 5  # was one per step: 13,000
    late = 6000 // end_validation.TIME_CHECKS_PER_INTERVAL  # 1 % of the interval, in steps
    assert len(rank0) == 2
    assert 6001 <= rank0[0] <= 6001 + late
    assert rank0[0] + 6000 <= rank0[1] <= rank0[0] + 6000 + late
