"""One run directory and one W&B run id for every process of a multi-process launch: global rank 0 decides.

The CLI picks the run location before Lightning has a process group, so the other ranks learn
rank 0's choice through what their launcher gives them:

- Lightning's own launcher (``--trainer.devices N`` on one machine) starts ranks 1..N-1 after
  rank 0 has parsed its config, with a copy of rank 0's environment: rank 0 publishes its choice in
  ``LIGHTNING_GEN_RUN`` before the launch.
- ``torchrun`` starts all ranks at once and serves a key-value store at MASTER_ADDR:MASTER_PORT
  (``TORCHELASTIC_USE_AGENT_STORE``): rank 0 writes its choice there and the others wait for it.
- SLURM (``srun``, one task per device) starts all ranks at once with no store yet: rank 0 writes its
  choice to a small file in the experiment folder named after the job (and requeue count), which the
  other ranks wait for. The runs folder must be on a filesystem every node sees.

Under SLURM the file is written for every job, so that a job requeued by Lightning's
``SLURMEnvironment(auto_requeue=True)`` continues the run directory of its first start from the newest
checkpoint there (Lightning's ``hpc_ckpt_*.ckpt`` written on the requeue signal, or ``last.ckpt``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from lightning_gen.errors import UserError
from lightning_gen.runs.directory import RunLocation

ENV_KEY = "LIGHTNING_GEN_RUN"
WAIT_SECONDS = 600.0
Decision = tuple[RunLocation, "str | None"]  # the run location and the resolved --ckpt_path


def to_json(location: RunLocation, ckpt_path: str | None) -> str:
    resume_from = str(location.resume_from) if location.resume_from is not None else None
    return json.dumps(
        {
            "root": str(location.root),
            "experiment": location.experiment,
            "directory": str(location.directory),
            "run_id": location.run_id,
            "resume_from": resume_from,
            "ckpt_path": ckpt_path,
        }
    )


def from_json(text: str) -> Decision:
    data: dict[str, Any] = json.loads(text)
    resume_from = Path(data["resume_from"]) if data["resume_from"] else None
    location = RunLocation(Path(data["root"]), data["experiment"], Path(data["directory"]), data["run_id"], resume_from)
    return location, data["ckpt_path"]


def _env_int(*names: str) -> int:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            return int(value)
    return 0


def launched_by_torchrun() -> bool:
    return os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and "MASTER_ADDR" in os.environ


def launched_by_srun() -> bool:
    return _env_int("SLURM_NTASKS") > 1 and "SLURM_JOB_ID" in os.environ and "SLURM_PROCID" in os.environ


def is_deciding_rank() -> bool:
    """Global rank 0, read from the launcher's environment (there is no process group yet)."""
    if launched_by_torchrun():
        return _env_int("RANK") == 0
    if launched_by_srun():
        return _env_int("SLURM_PROCID") == 0
    return _env_int("NODE_RANK", "GROUP_RANK") == 0 and _env_int("LOCAL_RANK") == 0


def _through_store(decide: Callable[[], Decision]) -> Decision:
    from torch.distributed import TCPStore

    store = TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False, timeout=timedelta(seconds=WAIT_SECONDS))
    key = f"lightning_gen/run/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    if _env_int("RANK") == 0:
        decision = decide()
        store.set(key, to_json(*decision))
        return decision
    return from_json(store.get(key).decode())


def _slurm_launch_file(experiment_dir: Path, restart: int | None = None) -> Path:
    restart = _env_int("SLURM_RESTART_COUNT") if restart is None else restart
    return experiment_dir / f".launch-{os.environ['SLURM_JOB_ID']}-{restart}.json"


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)  # the other ranks never read a half-written file


def requeued_run(experiment_dir: Path) -> RunLocation | None:
    """In a SLURM job started again by a requeue: the run its first start made, resumed from its newest checkpoint."""
    if "SLURM_JOB_ID" not in os.environ or _env_int("SLURM_RESTART_COUNT") == 0:
        return None
    for restart in range(_env_int("SLURM_RESTART_COUNT") - 1, -1, -1):
        earlier = _slurm_launch_file(experiment_dir, restart)
        if earlier.is_file():
            location = from_json(earlier.read_text())[0]
            directory = location.directory
            candidates = [*directory.glob("hpc_ckpt_*.ckpt"), *(directory / "checkpoints").glob("last.ckpt")]
            if not candidates:
                return None
            return dataclasses.replace(location, resume_from=max(candidates, key=lambda path: path.stat().st_mtime))
    return None


def _through_file(decide: Callable[[], Decision], experiment_dir: Path) -> Decision:
    path = _slurm_launch_file(experiment_dir)
    if _env_int("SLURM_PROCID") == 0:
        decision = decide()
        _write_atomically(path, to_json(*decision))
        return decision
    deadline = time.monotonic() + WAIT_SECONDS
    while not path.is_file():
        if time.monotonic() > deadline:
            raise UserError(
                f"rank {os.environ['SLURM_PROCID']} waited {WAIT_SECONDS:.0f} s for rank 0 to write {path}; put "
                f"trainer.default_root_dir on a filesystem every node sees, or check rank 0's log."
            )
        time.sleep(0.2)
    return from_json(path.read_text())


def agreed_run_location(decide: Callable[[], Decision], experiment_dir: Path) -> Decision:
    """``decide()`` runs on global rank 0 only; every rank returns its result."""
    if launched_by_torchrun():
        return _through_store(decide)
    if launched_by_srun():
        return _through_file(decide, experiment_dir)
    if not is_deciding_rank() and ENV_KEY in os.environ:
        return from_json(os.environ[ENV_KEY])
    decision = decide()
    # Inherited by the ranks Lightning's launcher starts; a later run in this process overwrites it.
    os.environ[ENV_KEY] = to_json(*decision)
    if "SLURM_JOB_ID" in os.environ:  # a single-task SLURM job: remembered for a requeue
        _write_atomically(_slurm_launch_file(experiment_dir), os.environ[ENV_KEY])
    return decision
