"""Checkpoint files: atomic and streamed writes, fallback from a truncated last.ckpt, copied checkpoints, best-k direction."""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import REPO, process_env, run_cli

from lightning_gen.checkpoints.callbacks import monitor_mode
from lightning_gen.checkpoints.files import AtomicStreamingCheckpointIO, atomic_torch_save
from lightning_gen.errors import UserError
from lightning_gen.runs.directory import latest_checkpoint


def run_python(code: str) -> subprocess.CompletedProcess:
    env = {**process_env(), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)


def test_save_writes_a_temporary_file_in_the_destination_directory_then_renames_it(tmp_path, monkeypatch):
    target = tmp_path / "run" / "last.ckpt"
    renames = []
    real_replace = os.replace
    monkeypatch.setattr(
        os, "replace", lambda source, destination: (renames.append((Path(source), Path(destination))), real_replace(source, destination))
    )
    checkpoint = {"state_dict": {"w": torch.arange(6.0)}, "global_step": 3}
    AtomicStreamingCheckpointIO().save_checkpoint(checkpoint, target)
    [(source, destination)] = renames
    assert destination == target and source.parent == target.parent and source.name.startswith(".last.ckpt.")
    loaded = AtomicStreamingCheckpointIO().load_checkpoint(target)
    assert loaded["global_step"] == 3 and torch.equal(loaded["state_dict"]["w"], torch.arange(6.0))
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]


def test_a_full_disk_leaves_the_previous_checkpoint_intact_and_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "last.ckpt"
    atomic_torch_save({"w": torch.ones(10)}, target)
    real_fdopen = os.fdopen

    class FullDisk:
        """The temporary file, which fills up after 1 MB like a full disk."""

        def __init__(self, file):
            self.file, self.written = file, 0

        def write(self, data):
            self.written += memoryview(data).nbytes
            if self.written > 2**20:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.file.write(data)

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.file.__exit__(*exc)

    monkeypatch.setattr(os, "fdopen", lambda *args, **kwargs: FullDisk(real_fdopen(*args, **kwargs)))
    with pytest.raises(UserError, match=r"could not write checkpoint .*last.ckpt \(No space left on device\); the previous file is intact"):
        atomic_torch_save({"w": torch.zeros(2**20)}, target)
    monkeypatch.undo()
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.ones(10))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_a_killed_save_leaves_a_temporary_that_the_next_save_removes(tmp_path):
    stale = tmp_path / ".last.ckpt.0badf00d.partial"
    stale.write_bytes(b"half a checkpoint")
    atomic_torch_save({"w": torch.ones(2)}, tmp_path / "last.ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


PEAK_PROBE = """
    import json, torch
    from pathlib import Path
    from lightning.pytorch.plugins.io import TorchCheckpointIO
    from lightning_gen.checkpoints.files import AtomicStreamingCheckpointIO

    def kib(field):
        return next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field + ":"))

    checkpoint = {{"state_dict": {{f"w{{i}}": torch.full((2**20,), float(i)) for i in range(32)}}}}  # 128 MiB
    extra = {{}}
    for io in (AtomicStreamingCheckpointIO, TorchCheckpointIO):
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
        before = kib("VmRSS")
        io().save_checkpoint(checkpoint, {directory!r} + "/" + io.__name__ + ".ckpt")
        extra[io.__name__] = (kib("VmHWM") - before) * 1024 / (32 * 4 * 2**20)
    print(json.dumps(extra))
"""


def test_peak_extra_memory_of_a_save_is_under_ten_percent_of_the_checkpoint(tmp_path):
    result = run_python(PEAK_PROBE.format(directory=str(tmp_path)))
    assert result.returncode == 0, result.stderr[-2000:]
    extra = json.loads(result.stdout.strip().splitlines()[-1])
    assert extra["AtomicStreamingCheckpointIO"] < 0.10
    assert extra["TorchCheckpointIO"] > 0.9  # Lightning's default buffers the whole file: the probe can see it
    assert torch.load(tmp_path / "AtomicStreamingCheckpointIO.ckpt", weights_only=True, mmap=True)["state_dict"]["w5"][0] == 5.0


# -- resuming ---------------------------------------------------------------------------------------
def test_ckpt_path_last_falls_back_from_a_truncated_last_ckpt_with_one_warning(tiny_config, tmp_path, one_torch_thread):
    run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path, "--checkpointing.every_n_steps", "3")
    checkpoints = tmp_path / "tiny/version_0/checkpoints"
    last = checkpoints / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a session killed mid-copy
    newest = checkpoints / "best-epoch001-step0000010.ckpt"  # written with last.ckpt at the end of epoch 2, after periodic-step9
    (checkpoints / "best-epoch000-step0000005.ckpt").touch()  # and an empty file, older than last.ckpt
    os.utime(checkpoints / "best-epoch000-step0000005.ckpt", (0, 0))
    with pytest.warns(UserWarning) as warnings:
        assert latest_checkpoint(tmp_path, "tiny") == newest
    messages = [str(w.message) for w in warnings if "could not be read" in str(w.message)]
    assert len(messages) == 1 and str(last) in messages[0] and str(newest) in messages[0]

    run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path, "--trainer.max_epochs", "3", "--ckpt_path", "last")
    resumed = torch.load(last, map_location="cpu", weights_only=True)
    assert resumed["global_step"] == 15
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == ["version_0"]


def test_ckpt_path_last_with_no_readable_checkpoint_is_one_sentence(tmp_path):
    checkpoints = tmp_path / "tiny/version_0/checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "last.ckpt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UserError, match="found no readable checkpoint in .*last.ckpt"):
        latest_checkpoint(tmp_path, "tiny")


def test_a_checkpoint_copied_out_of_its_run_resumes_into_its_own_run_directory(tiny_config, tmp_path, one_torch_thread):
    run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "runs")
    run = tmp_path / "runs/tiny/version_0"
    elsewhere = tmp_path / "downloads" / "shared"
    elsewhere.mkdir(parents=True)
    copy = elsewhere / "tiny-last.ckpt"
    shutil.copy(run / "checkpoints/last.ckpt", copy)

    run_cli(
        "fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "runs", "--trainer.max_epochs", "3", "--ckpt_path", copy
    )
    assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == ["shared"]  # nothing written into the grandparent
    assert sorted(p.name for p in elsewhere.iterdir()) == ["tiny-last.ckpt"]
    assert torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 15
    assert sorted(p.name for p in (tmp_path / "runs/tiny").iterdir()) == ["version_0"]

    shutil.rmtree(tmp_path / "runs")  # the run directory it names is gone: refuse, in one sentence
    with pytest.raises(SystemExit) as refused:
        run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "runs", "--ckpt_path", copy)
    assert refused.value.code == 2
    assert not (tmp_path / "downloads/checkpoints").exists() and not (tmp_path / "runs").exists()


# -- best-k -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("monitor", "mode"),
    [
        ("val/psnr", "max"),
        ("val/ssim", "max"),
        ("val/class_accuracy", "max"),
        ("val/judge_overall", "max"),
        ("val/loss", "min"),
        ("val/fid", "min"),
        ("val/kid_mean", "min"),
    ],
)
def test_monitor_direction(monitor, mode):
    assert monitor_mode(monitor) == mode
    assert monitor_mode(monitor, "min") == "min"


def test_best_k_by_psnr_keeps_the_highest(tiny_config, tmp_path, one_torch_thread):
    run_cli(
        "fit",
        "--config",
        tiny_config,
        "--trainer.default_root_dir",
        tmp_path,
        "--trainer.max_epochs",
        "4",
        "--checkpointing.monitor",
        "val/psnr",
        "--checkpointing.save_top_k",
        "2",
    )
    checkpoints = tmp_path / "tiny/version_0/checkpoints"
    state = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)
    [best_state] = [value for key, value in state["callbacks"].items() if "val/psnr" in key]
    scores = {Path(path).name: float(score) for path, score in best_state["best_k_models"].items()}
    kept = sorted(p.name for p in checkpoints.glob("best-*.ckpt"))
    assert sorted(scores) == kept and len(kept) == 2
    # Every epoch's PSNR, from the CSV log: the two kept are the two highest.
    rows = list(csv.DictReader(open(next(tmp_path.rglob("metrics.csv")))))
    per_epoch = sorted(float(row["val/psnr"]) for row in rows if row.get("val/psnr"))
    assert len(per_epoch) == 4
    assert sorted(scores.values()) == pytest.approx(per_epoch[-2:])
