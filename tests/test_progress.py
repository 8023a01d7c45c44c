"""Live progress in a pipe: the line helper, the fit callback chosen by the output, a piped fit read while it runs,
and the thread advice (a pure function with hand-computed cases, and fit printing it when forced)."""

from __future__ import annotations

import copy
import io
import queue
import re
import subprocess
import sys
import threading
import time

import pytest
import torch
import yaml
from conftest import REPO, TINY_CONFIG, process_env, run_cli
from lightning.pytorch.callbacks import TQDMProgressBar

from lightning_gen.callbacks.progress import LineProgress, progress_callbacks
from lightning_gen.console import progress as progress_module
from lightning_gen.console import threads
from lightning_gen.console.progress import Progress, duration, rate, track
from lightning_gen.console.threads import suggested_threads, thread_advice


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(progress_module.time, "monotonic", fake)
    return fake


def test_lines_in_a_pipe_first_soon_then_every_interval_and_a_last_line(monkeypatch, clock):
    monkeypatch.setenv("LIGHTNING_GEN_PROGRESS", "lines")
    monkeypatch.setenv("LIGHTNING_GEN_PROGRESS_SECONDS", "30")
    out = io.StringIO()
    with Progress("real features of X test", total=950, unit="img", stream=out) as progress:
        for _ in range(19):  # 50 images every 2 s
            clock.now += 2
            progress.update(50)
    lines = out.getvalue().splitlines()
    # The first line once 5 s have passed (at 6 s), the next 30 s later (36 s), then the closing line.
    assert len(lines) == 3, lines
    assert lines[0] == "real features of X test: 150/950 img (16%), 25.0 img/s, ETA 0:00:32, elapsed 0:00:06"
    assert lines[1].startswith("real features of X test: 900/950 img (95%), 25.0 img/s, ETA 0:00:02, elapsed 0:00:36")
    assert lines[2] == "real features of X test: done, 950 img in 0:00:38 (25.0 img/s)"


def test_a_quick_loop_prints_nothing_and_track_counts_items(monkeypatch, clock, capsys):
    monkeypatch.setenv("LIGHTNING_GEN_PROGRESS", "lines")
    assert list(track(range(5), "quick")) == list(range(5))
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("LIGHTNING_GEN_PROGRESS_SECONDS", "0")  # a line at every update

    def slow(items):
        for item in items:
            clock.now += 1
            yield item

    assert sum(track(slow([3, 4]), "batches", total=7, unit="img", count=lambda item: item)) == 7
    assert capsys.readouterr().out.splitlines() == [
        "batches: 3/7 img (43%), 3.00 img/s, ETA 0:00:01, elapsed 0:00:01",
        "batches: done, 7 img in 0:00:02 (3.50 img/s)",
    ]


def test_a_terminal_gets_a_bar_and_no_lines(monkeypatch, capsys):
    monkeypatch.setenv("LIGHTNING_GEN_PROGRESS", "bar")
    with Progress("work", total=3) as progress:
        progress.update(3)
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("LIGHTNING_GEN_PROGRESS", "auto")
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # a pipe: not a terminal
    assert progress_module.mode() == "lines"


def test_duration_and_rate_formats():
    assert duration(7) == "0:00:07" and duration(3723) == "1:02:03" and duration(2 * 86400 + 5) == "2 days, 0:00:05"
    assert duration(float("inf")) == "?"
    assert (
        rate(0, 1) == "? it/s" and rate(12, 100) == "0.12 it/s" and rate(181, 100) == "1.81 it/s" and rate(5000, 10, "img") == "500 img/s"
    )


def test_the_fit_callback_is_chosen_by_the_output(monkeypatch):
    monkeypatch.setenv("LIGHTNING_GEN_PROGRESS", "lines")
    assert [type(callback) for callback in progress_callbacks(None, [])] == [LineProgress]
    assert progress_callbacks(False, []) == []  # --trainer.enable_progress_bar false
    assert progress_callbacks(None, [TQDMProgressBar()]) == []  # the config's own bar
    monkeypatch.setenv("LIGHTNING_GEN_PROGRESS", "bar")
    assert progress_callbacks(True, []) == []  # Lightning's bar


def read_lines_while_running(process: subprocess.Popen, wanted, timeout: float) -> tuple[str | None, list[str]]:
    """The first stdout line ``wanted(line)`` accepts, read while the process runs (None on timeout or exit)."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if process.poll() is not None:
                return None, seen
            continue
        seen.append(line.rstrip("\n"))
        if wanted(line):
            return line, seen
    return None, seen


@pytest.mark.slow
def test_a_piped_fit_prints_progress_lines_while_it_runs(tmp_path):
    config = copy.deepcopy(TINY_CONFIG)
    config["trainer"]["max_epochs"] = 1000  # minutes of training: it is still running when the line arrives
    del config["trainer"]["enable_progress_bar"]
    (tmp_path / "piped.yaml").write_text(yaml.safe_dump(config))
    env = {**process_env(), "LIGHTNING_GEN_PROGRESS_SECONDS": "1", "OMP_NUM_THREADS": "1"}
    env.pop("LIGHTNING_GEN_PROGRESS", None)
    with open(tmp_path / "stderr.txt", "w") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lightning_gen",
                "fit",
                "--config",
                str(tmp_path / "piped.yaml"),
                "--trainer.default_root_dir",
                str(tmp_path / "runs"),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            line, seen = read_lines_while_running(process, lambda line: line.startswith("epoch ") and ", step " in line, timeout=240)
            alive = process.poll() is None
        finally:
            process.kill()
            process.wait(timeout=60)
    assert line is not None, (
        "no progress line while the fit ran; stdout:\n" + "\n".join(seen) + "\nstderr:\n" + (tmp_path / "stderr.txt").read_text()[-3000:]
    )
    assert alive, "the progress line came only after the process ended"
    # e.g. "epoch 1/1000, step 3/5000, batch 3/5, 1.81 it/s, ETA 0:45:12, loss 101.6, elapsed 0:00:02"
    pattern = r"epoch \d+/1000, step \d+/5000, batch \d/5, [\d.]+ it/s, ETA \d+:\d\d:\d\d, loss [-+.e\d]+, elapsed \d+:\d\d:\d\d"
    assert re.fullmatch(pattern, line.rstrip("\n")), line


def test_line_progress_lines_name_epoch_step_rate_eta_and_loss(tmp_path, monkeypatch, capsys, one_torch_thread):
    monkeypatch.setenv("LIGHTNING_GEN_PROGRESS", "lines")
    monkeypatch.setenv("LIGHTNING_GEN_PROGRESS_SECONDS", "0")  # a line after every batch
    config = copy.deepcopy(TINY_CONFIG)
    del config["trainer"]["enable_progress_bar"]
    (tmp_path / "lines.yaml").write_text(yaml.safe_dump(config))
    run_cli("fit", "--config", tmp_path / "lines.yaml", "--trainer.default_root_dir", tmp_path / "runs")
    out = capsys.readouterr().out.splitlines()
    steps = [line for line in out if line.startswith("epoch ")]
    assert steps[0].startswith("epoch 1/2, step 1/10, batch 1/5, ") and steps[-1].startswith("epoch 2/2, step 10/10, batch 5/5, ")
    assert all(" it/s, ETA " in line and ", loss " in line for line in steps), steps
    validations = [line for line in out if line.startswith("validation after epoch")]
    assert len(validations) == 2 and "val/loss " in validations[0] and validations[1].startswith("validation after epoch 2, step 10: ")
    assert any(line.startswith("training ended at step 10: 10 steps in ") for line in out)


# -- threads ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cores, runnable, ranks, threads, suggested",
    [
        (2, 0, 1, 2, None),  # an idle 2-core machine: 2 threads fit
        (2, 3, 1, 2, 1),  # 3 busy processes on 2 cores: 1 thread
        (2, 1, 1, 2, 1),  # 1 + 2 = 3 > 2
        (2, 1, 1, 1, None),  # 1 + 1 fits
        (2, 5, 1, 1, None),  # busy, but nothing fewer than 1 thread to suggest
        (16, 0, 4, 16, 4),  # 4 DDP ranks × 16 threads on 16 cores: 4 each
        (16, 0, 4, 4, None),  # 4 × 4 = 16 fits
        (8, 2, 2, 4, 3),  # 2 + 2 × 4 = 10 > 8: (8 - 2) // 2 = 3
        (4, 10, 2, 2, 1),  # 10 + 2 × 2 > 4 and no core left free: the least, 1 thread per rank
    ],
)
def test_thread_advice_hand_computed(cores, runnable, ranks, threads, suggested):
    line = thread_advice(cores, runnable, ranks, threads)
    if suggested is None:
        assert line is None
        return
    assert suggested_threads(cores, runnable, ranks) == suggested
    assert line is not None and "\n" not in line and f"OMP_NUM_THREADS={suggested}" in line and f"{cores} CPU core" in line
    assert (f"{ranks} processes × {threads}" in line) if ranks > 1 else (f"{threads} torch threads" in line)
    assert (f"{runnable} other busy process" in line) == bool(runnable)


def test_runnable_others_reads_this_machine():
    assert threads.runnable_others(samples=1) >= 0 and threads.cpu_cores() >= 1


def test_fit_prints_the_thread_advice_when_oversubscribed(tiny_config, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(threads, "cpu_cores", lambda: 2)
    monkeypatch.setattr(threads, "runnable_others", lambda: 3)
    monkeypatch.setattr(threads, "_advised", False)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run_cli("fit", "--config", tiny_config, "--trainer.default_root_dir", tmp_path / "runs", "--trainer.max_steps", 1)
    finally:
        torch.set_num_threads(previous)
    advice = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Threads: ")]
    assert advice == [
        "Threads: 3 other busy processes and 2 torch threads share 2 CPU cores, which can make steps several times "
        "slower; run with OMP_NUM_THREADS=1 (e.g. `OMP_NUM_THREADS=1 python -m lightning_gen ...`)."
    ]
    # An idle machine: nothing said.
    monkeypatch.setattr(threads, "runnable_others", lambda: 0)
    monkeypatch.setattr(threads, "_advised", False)
    assert threads.advise(1, 2) is None


def test_evaluate_and_the_image_cache_show_progress_lines(tmp_path, monkeypatch, capsys, one_torch_thread):
    from conftest import save_checkpoint
    from fixtures_folders import image_folder_with_splits

    from lightning_gen.data import ShapesDataModule

    FACTS = ShapesDataModule(image_size=16).facts

    from lightning_gen.models import VAE

    monkeypatch.setenv("LIGHTNING_GEN_PROGRESS", "lines")
    monkeypatch.setenv("LIGHTNING_GEN_PROGRESS_SECONDS", "0")  # a line at every batch
    root = image_folder_with_splits(tmp_path / "folder", {"train": 3, "val": 2, "test": 12})
    data = {
        "class_path": "lightning_gen.data.ImageFolderDataModule",
        "init_args": {"root": str(root), "image_size": 16, "cache_dir": str(tmp_path / "cache"), "batch_size": 8},
    }
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"data": data}))
    checkpoint = save_checkpoint(VAE(FACTS, channels=(8, 16), latent_dim=4), tmp_path / "vae.ckpt")
    run_cli(
        "evaluate",
        "--ckpt_path",
        checkpoint,
        "--config",
        tmp_path / "data.yaml",
        "--metrics",
        "fid",
        "--num",
        12,
        "--batch_size",
        5,
        "--split",
        "test",
        "--log_to_run",
        "false",
        "--feature_extractor",
        "test_stats_evaluate.MeanFeatures",
        "--cache_dir",
        tmp_path / "features",
    )
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("Decoding image_folder once: done, 34 img in ") for line in out), out  # one chunk of 512: the closing line
    assert "real features of ImageFolderDataModule test: 8/24 img (33%)" in "\n".join(out), out
    assert any(line.startswith("real features of ImageFolderDataModule test: done, 24 img in ") for line in out), out
    assert any(line.startswith("sampling 12 images: 5/12 img (42%), ") and " img/s, ETA " in line for line in out), out
    assert any(line.startswith("sampling 12 images: done, 12 img in ") for line in out), out
    assert any(line.startswith("reconstructing ImageFolderDataModule test: done, 24 img in ") for line in out), out
