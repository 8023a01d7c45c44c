"""Build the logger a run asked for, inside its run directory; a resume adds to the run's records.

- CSV: Lightning's writer deletes an existing ``metrics.csv`` when it starts; ``RunCSVLogger``'s writer
  appends to it instead (rewriting it with the union of the columns when new metric keys appear).
- TensorBoard: every session writes its own event file beside the earlier ones; ``purge_step`` makes
  TensorBoard hide what an earlier session logged past the checkpoint the resume started from.
- W&B: the run id travels in the checkpoint, so a resume continues the same run (offline: a second
  ``offline-run-*`` folder with the same id, which ``wandb sync`` merges).

Rows an earlier session logged after the checkpoint a resume starts from (a session killed between
two checkpoints) are trained again by the resume; they move from ``metrics.csv`` to
``metrics.replaced-from-step<N>.csv``, so ``metrics.csv`` reads like one uninterrupted run.
"""

from __future__ import annotations

import csv
import io
import netrc
import os
from pathlib import Path
from typing import Any, Optional, Union

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.core.saving import save_hparams_to_yaml
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger

from lightning_gen.checkpoints.files import replace_file
from lightning_gen.compat import csv_writer, set_csv_writer
from lightning_gen.config.settings import TrackingSettings
from lightning_gen.runs.directory import RunLocation

METRICS_FILE = "metrics.csv"


def _step_of(row: dict[str, str]) -> int | None:
    try:
        return int(float(row.get("step") or ""))
    except ValueError:
        return None


def _write_rows(path: Path, fieldnames: list[str], rows: list[dict[str, Any]]) -> None:
    """The whole file at once: a temporary file beside it, renamed over it."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fieldnames, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    replace_file(path, text.getvalue())


class AppendingMetricsWriter:
    """The CSV logger's writer (``log_metrics``, ``log_hparams``, ``save``, ``metrics``) that keeps what the
    run's earlier sessions wrote to ``metrics.csv``.

    Args:
        log_dir: the run directory.
        resume_step: the global step of the checkpoint a resume starts from; rows logged at this step or
            later by an earlier session are moved aside on the first save (the resume logs them again).
    """

    NAME_METRICS_FILE = METRICS_FILE
    NAME_HPARAMS_FILE = "hparams.yaml"

    def __init__(self, log_dir: str, resume_step: int | None = None) -> None:
        self.log_dir = log_dir
        self.metrics_file_path = os.path.join(log_dir, self.NAME_METRICS_FILE)
        self.metrics: list[dict[str, Any]] = []
        self.hparams: dict[str, Any] = {}
        self._resume_step = resume_step
        os.makedirs(log_dir, exist_ok=True)
        self.metrics_keys: list[str] = self._header()

    def _header(self) -> list[str]:
        try:
            with open(self.metrics_file_path, newline="") as file:
                return next(csv.reader(file), [])
        except FileNotFoundError:
            return []

    def _set_aside_replaced_rows(self) -> None:
        step, self._resume_step = self._resume_step, None
        path = Path(self.metrics_file_path)
        if step is None or not path.is_file():
            return
        with open(path, newline="") as file:
            rows = list(csv.DictReader(file))
        kept, replaced = [], []
        for row in rows:
            logged_at = _step_of(row)
            (kept if logged_at is None or logged_at < step else replaced).append(row)
        if not replaced:
            return
        aside = path.with_name(f"metrics.replaced-from-step{step}.csv")
        number = 1
        while aside.exists():
            number += 1
            aside = path.with_name(f"metrics.replaced-from-step{step}-{number}.csv")
        _write_rows(aside, self.metrics_keys, replaced)
        _write_rows(path, self.metrics_keys, kept)

    def log_metrics(self, metrics_dict: dict[str, Any], step: Optional[int] = None) -> None:
        if step is None:
            step = len(self.metrics)
        metrics = {key: value.item() if hasattr(value, "item") else value for key, value in metrics_dict.items()}
        metrics["step"] = step
        self.metrics.append(metrics)

    def log_hparams(self, params: dict[str, Any]) -> None:
        self.hparams.update(params)
        save_hparams_to_yaml(os.path.join(self.log_dir, self.NAME_HPARAMS_FILE), self.hparams)

    def save(self) -> None:
        if not self.metrics:
            return
        self._set_aside_replaced_rows()
        path = Path(self.metrics_file_path)
        new_keys = set().union(*self.metrics) - set(self.metrics_keys)
        if new_keys:
            self.metrics_keys = sorted(set(self.metrics_keys) | new_keys)
            if path.is_file():  # a new column: the file again with the wider header and every earlier row
                with open(path, newline="") as file:
                    _write_rows(path, self.metrics_keys, list(csv.DictReader(file)))
        exists = path.is_file()
        with open(path, "a" if exists else "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
            if not exists:
                writer.writeheader()
            writer.writerows(self.metrics)
        self.metrics = []


class RunCSVLogger(CSVLogger):
    """Lightning's CSVLogger writing ``metrics.csv`` and ``hparams.yaml`` straight into the run directory,
    appending to what earlier sessions of the run wrote (see AppendingMetricsWriter)."""

    def __init__(self, save_dir: Union[str, Path], resume_step: int | None = None, flush_logs_every_n_steps: int = 100):
        super().__init__(save_dir=str(save_dir), name="", version="", flush_logs_every_n_steps=flush_logs_every_n_steps)
        self._resume_step = resume_step

    @property
    @rank_zero_experiment
    def experiment(self) -> AppendingMetricsWriter:  # type: ignore[override]
        if csv_writer(self) is None:
            set_csv_writer(self, AppendingMetricsWriter(self.log_dir, self._resume_step))
        return csv_writer(self)


def wandb_credentials_present() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_offline(settings: TrackingSettings) -> bool:
    if settings.wandb_mode != "auto":
        return settings.wandb_mode == "offline"
    if os.environ.get("WANDB_MODE") in {"offline", "disabled", "dryrun"}:
        return True
    return not wandb_credentials_present()


def make_logger(settings: TrackingSettings, run: RunLocation, resume_step: int | None = None) -> Logger | bool:
    """``resume_step``: the global step of the checkpoint a resumed run continues from (None for a new run)."""
    run.directory.mkdir(parents=True, exist_ok=True)
    if settings.logger == "none":
        return False
    if settings.logger == "csv":
        return RunCSVLogger(run.directory, resume_step=resume_step)
    if settings.logger == "tensorboard":
        # Earlier sessions' event files stay; purge_step hides their events past the resumed checkpoint.
        purge = {"purge_step": resume_step} if resume_step is not None else {}
        return TensorBoardLogger(save_dir=str(run.directory), name="", version="", default_hp_metric=False, **purge)
    offline = wandb_offline(settings)
    # save_dir keeps W&B's files inside the run directory (a mounted drive on Colab).
    return WandbLogger(
        save_dir=str(run.directory),
        project=settings.project,
        group=settings.group or run.experiment,
        name=f"{run.experiment}/{run.directory.name}",
        id=run.run_id,
        resume="allow",
        offline=offline,
        log_model=False,
    )


def wandb_files(run_directory: Path) -> list[Path]:
    return sorted((run_directory / "wandb").glob("*run-*"))
