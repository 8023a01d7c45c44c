"""Under DDP the guard's decision needs no blocking collective: the gradients are all-reduced (the same on every rank)
and each rank's loss flag is all-reduced asynchronously from before the backward pass. Two real gloo processes."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning.pytorch.strategies import DDPStrategy

from lightning_gen.callbacks.nonfinite_guard import NonFiniteGuard


class NoBlockingReduction(DDPStrategy):
    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        raise AssertionError("the guard made a blocking reduction under DDP")


def rank_main(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3, 2))
    trainer = SimpleNamespace(strategy=NoBlockingReduction(), world_size=2, precision_plugin=SimpleNamespace(scaler=None), global_step=0)
    guard = NonFiniteGuard(max_consecutive=5)
    guard.on_train_start(trainer, model.module)
    skipped = []
    for step in range(3):
        loss = model(torch.full((4, 3), float(rank + 1))).sum()
        if step == 1 and rank == 1:
            loss = loss + float("inf")  # only rank 1's loss is Inf; its gradients (and so the all-reduced ones) stay finite
        guard.on_before_backward(trainer, model.module, loss)
        loss.backward()
        guard.on_before_optimizer_step(trainer, model.module, None)
        skipped.append(all(parameter.grad is None for parameter in model.module.parameters()))
        model.zero_grad(set_to_none=True)
    Path(out, f"rank{rank}.json").write_text(json.dumps({"skipped": skipped, "count": guard.skipped}))
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_rank_whose_loss_alone_is_inf_makes_every_rank_skip_without_a_blocking_reduction(tmp_path):
    mp.spawn(rank_main, args=(free_port(), str(tmp_path)), nprocs=2)
    for rank in (0, 1):
        seen = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert seen == {"skipped": [False, True, False], "count": 1}, rank  # rank 0's own loss was finite: it skips too
