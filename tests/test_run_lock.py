"""One process per run: a fit holds run.lock (pid + host) in its run directory; a second process resuming
the run is refused in one sentence; a lock whose process is gone is taken over; version folders are
claimed atomically, so two fits started at once get their own, each with complete checkpoints."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, process_env, run_cli

from lightning_gen.checkpoints.files import atomic_write, temporary_path
from lightning_gen.errors import UserError
from lightning_gen.runs.directory import FOREIGN_STALE_SECONDS, LOCK_NAME, RunLock
from lightning_gen.runs.processes import process_start

HOLD_LOCK = """
import sys, time
from pathlib import Path
from lightning_gen.runs.directory import RunLock
lock = RunLock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(600)
"""


def holder_process(directory: Path) -> subprocess.Popen:
    """Another process holding the run's lock, as a running fit does."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(directory)],
        cwd=REPO,
        env=process_env(),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout.readline().strip() == "held"
    return process


def sleeper() -> subprocess.Popen:
    return subprocess.Popen(["sleep", "600"], start_new_session=True)


def write_lock(directory: Path, **holder) -> Path:
    path = directory / LOCK_NAME
    path.write_text(json.dumps({"pid": 1, "host": socket.gethostname(), "started": "2026-12-01T00:00:00", "token": "old", **holder}))
    return path


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# -- the lock itself --------------------------------------------------------------------------------
def test_a_lock_is_exclusive_names_its_holder_and_is_released(tmp_path):
    holder = holder_process(tmp_path)
    try:
        content = json.loads((tmp_path / LOCK_NAME).read_text())
        assert content["pid"] == holder.pid and content["host"] == socket.gethostname()
        with pytest.raises(UserError) as refused:
            RunLock(tmp_path).acquire()
        message = str(refused.value)
        assert f"in use by pid {holder.pid} on host {socket.gethostname()}" in message and f"kill {holder.pid}" in message
        assert message.count(". ") == 0 and message.endswith(".")
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    with RunLock(tmp_path) as lock:  # its process is gone: taken over
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_stale_lock_is_taken_over_with_one_line(tmp_path, lightning_log):
    pid = dead_pid()
    write_lock(tmp_path, pid=pid)
    lock = RunLock(tmp_path).acquire()
    lock.release()
    notices = [line for line in lightning_log if "stale lock" in line]
    assert len(notices) == 1 and f"pid {pid}" in notices[0] and "no longer running" in notices[0]


def test_a_lock_this_process_left_behind_is_taken_over(tmp_path):
    write_lock(tmp_path, pid=os.getpid())  # e.g. a notebook cell killed mid-run
    RunLock(tmp_path).acquire().release()


def test_a_lock_from_another_host_holds_until_its_heartbeat_stops(tmp_path):
    path = write_lock(tmp_path, pid=4242, host="colab-vm-1")
    with pytest.raises(UserError) as refused:
        RunLock(tmp_path).acquire()
    assert "pid 4242 on host colab-vm-1" in str(refused.value) and f"delete {path}" in str(refused.value)
    old = time.time() - FOREIGN_STALE_SECONDS - 5
    os.utime(path, (old, old))
    RunLock(tmp_path).acquire().release()


def test_a_held_lock_is_touched_by_its_heartbeat(tmp_path, monkeypatch):
    import lightning_gen.runs.directory as run_dir

    monkeypatch.setattr(run_dir, "HEARTBEAT_SECONDS", 0.05)
    lock = RunLock(tmp_path).acquire()
    old = time.time() - 1000
    os.utime(lock.path, (old, old))
    time.sleep(0.3)
    assert time.time() - lock.path.stat().st_mtime < 100
    lock.release()


# -- two processes, one run -------------------------------------------------------------------------
def test_a_second_process_resuming_a_running_run_is_refused_in_one_sentence(tiny_config, tmp_path, capsys, lightning_log):
    resume = ["fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path, "--trainer.max_epochs", "2", "--ckpt_path", "last"]
    run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path, "--trainer.max_epochs", "1")
    run = tmp_path / "tiny/version_0"
    before = {path.name: path.read_bytes() for path in run.glob("*.*")}
    holder = sleeper()  # the fit still running in another session, holding the run's lock
    write_lock(run, pid=holder.pid, process_start=process_start(holder.pid), started=None)
    try:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            run_cli(*resume)
        lines = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2
        assert lines[-1].startswith(f"error: run {run} is in use by pid {holder.pid} on host {socket.gethostname()}")
        assert lines[-1].count(". ") == 0
        assert {path.name: path.read_bytes() for path in run.glob("*.*") if path.name != LOCK_NAME} == before
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # like a vanished runtime: the lock file stays
        holder.wait()
    assert (run / LOCK_NAME).is_file()
    run_cli(*resume)
    assert any(f"Taking over the stale lock {run / LOCK_NAME} (pid {holder.pid} on" in line for line in lightning_log)
    assert not (run / LOCK_NAME).exists()  # released at the end
    assert torch.load(run / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 10


def test_a_save_never_deletes_the_file_another_live_process_is_writing(tmp_path):
    target = tmp_path / "last.ckpt"
    writer = sleeper()  # a process in the middle of writing target (its name is in the temporary file's)
    in_flight = temporary_path(target).with_name(f".last.ckpt.{writer.pid}.0badf00d.partial")
    in_flight.write_bytes(b"half")
    try:
        atomic_write(target, lambda file: file.write(b"mine"))
        assert in_flight.is_file() and target.read_bytes() == b"mine"  # the other writer's file survives our save
    finally:
        writer.kill()
        writer.wait()
    left_by_this_process = temporary_path(target)
    left_by_this_process.write_bytes(b"old")
    atomic_write(target, lambda file: file.write(b"again"))
    assert not in_flight.exists() and not left_by_this_process.exists()  # a dead writer's leftovers are removed


@pytest.mark.slow
def test_two_fits_started_at_once_get_their_own_versions_with_complete_checkpoints(tiny_config, tmp_path):
    args = [
        "fit",
        "--config",
        tiny_config,
        "--trainer.default_root_dir",
        tmp_path,
        "--trainer.max_epochs",
        "3",
        "--checkpointing.every_n_steps",
        "4",
        "--checkpointing.keep_periodic",
        "2",
        "--checkpointing.save_top_k",
        "2",
    ]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "lightning_gen", *map(str, args)],
            cwd=REPO,
            env=process_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    errors = [process.communicate(timeout=300)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [error[-2000:] for error in errors]
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == ["version_0", "version_1"]
    run_ids = set()
    for version in ("version_0", "version_1"):
        checkpoints = tmp_path / "tiny" / version / "checkpoints"
        last = torch.load(checkpoints / "last.ckpt", weights_only=True)
        assert last["lightning_gen"]["run_directory"] == str(checkpoints.parent)
        run_ids.add(last["lightning_gen"]["run_id"])
        listed = {Path(path) for state in last["callbacks"].values() for path in state.get("best_k_models", {})}
        assert len(listed) == 4 and all(path.parent == checkpoints and path.is_file() for path in listed)
        on_disk = {path.name for path in checkpoints.iterdir()}
        assert on_disk == {path.name for path in listed} | {"last.ckpt"}  # nothing half-written, nothing of the other run
    assert len(run_ids) == 2
