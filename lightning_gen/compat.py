"""The only place that reaches into private parts of Lightning, jsonargparse, torchmetrics and argparse.

Each function below uses one thing those libraries do not publish, says what it reaches into and why no
public API does the job. ``tests/test_compat_canaries.py`` has one canary per item: a release that renames,
retypes or rewords it turns that test red, naming the item, instead of breaking a run silently. The
dependency pins in ``pyproject.toml`` are the minor ranges these canaries passed on.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger
from torch.optim.swa_utils import AveragedModel


# -- Lightning: the CLI ----------------------------------------------------------------------------------------------
class LightningCLIWithoutCheckpointHparams(LightningCLI):
    """LightningCLI that does not merge a ``--ckpt_path`` checkpoint's hyperparameters into the config.

    Reaches into: ``LightningCLI._parse_ckpt_path``, which ``LightningCLI.__init__`` calls right after parsing.
    Why: our checkpoints' hyperparameters hold the data facts the CLI links from the datamodule, which a config
    may not set, so merging them fails; the YAML config stays the single source of settings. LightningCLI has
    no option to switch the merge off.
    """

    def _parse_ckpt_path(self) -> None:
        return


# -- Lightning: the trainer's loops ------------------------------------------------------------------------------------
def _batch_progress(trainer: pl.Trainer) -> Any:
    return trainer.fit_loop.epoch_loop.batch_progress


def batches_fetched_in_run(trainer: pl.Trainer) -> int:
    """Training batches fetched over the whole run (resumed runs included), counting the current one.

    Reaches into: ``trainer.fit_loop.epoch_loop.batch_progress.total.ready`` (the private ``_TrainingEpochLoop``'s
    ``_BatchProgress``). Why: ``trainer.global_step`` counts optimizer steps, which a skipped or non-finite step
    does not advance; the per-batch random streams need the count of batches, which only the loop's progress holds.
    """
    return int(_batch_progress(trainer).total.ready)


def batches_processed_in_epoch(trainer: pl.Trainer) -> int:
    """Training batches of the current epoch the trainer has finished (what a mid-epoch checkpoint resumes after).

    Reaches into: ``trainer.fit_loop.epoch_loop.batch_progress.current.processed``. Why: Lightning hands a stateful
    DataLoader no count of its own; ``batch_idx`` exists only inside the batch hooks, not when a checkpoint is saved.
    """
    return int(_batch_progress(trainer).current.processed)


def is_last_training_batch(trainer: pl.Trainer) -> bool:
    """Whether the training batch now running (or just finished) is the last of its epoch.

    Reaches into: ``trainer.fit_loop.epoch_loop.batch_progress.is_last_batch``. Why: the batch hooks get ``batch_idx``
    but not whether it is the last one (``num_training_batches`` is unknown for an iterable dataset), and a
    validation inside the epoch needs to know whether the epoch is ending.
    """
    return bool(_batch_progress(trainer).is_last_batch)


def forget_unfinished_batch(trainer: pl.Trainer) -> None:
    """Rewinds the loop's batch counters to the last finished batch (``reset_on_restart`` on both counters).

    Reaches into: ``batch_progress.current`` and ``.total`` of the private training epoch loop, and mutates them.
    Why: an exception inside a step leaves the batch counted as fetched, and Lightning's restart logic forgets the
    fetch only in the epoch's counters; a checkpoint saved at that moment must resume by replaying the step.
    """
    progress = _batch_progress(trainer)
    progress.current.reset_on_restart()
    progress.total.reset_on_restart()


def logs_this_step(trainer: pl.Trainer) -> bool:
    """Whether Lightning writes the step-level values of ``self.log`` to the loggers at this training step.

    Reaches into: ``trainer._logger_connector.should_update_logs``. Why: the rule (``log_every_n_steps`` against the
    private count of batches that stepped, or a stopping trainer) is not published; calling ``self.log`` on the
    other steps only costs time.
    """
    return bool(trainer._logger_connector.should_update_logs)


# -- Lightning: WeightAveraging -----------------------------------------------------------------------------------------
def averaged_model(callback: WeightAveraging) -> AveragedModel | None:
    """The ``AveragedModel`` a WeightAveraging callback holds (None before ``setup``).

    Reaches into: ``WeightAveraging._average_model``. Why: the callback publishes no accessor, and EMA updates
    the averaged tensors with one fused lerp instead of ``AveragedModel.update_parameters``' generic walk.
    """
    return callback._average_model


# -- Lightning: CSVLogger --------------------------------------------------------------------------------------------
def csv_writer(logger: CSVLogger) -> Any:
    """The metrics writer a CSVLogger has created (None before its first ``experiment``).

    Reaches into: ``CSVLogger._experiment``. Why: CSVLogger's ``finalize`` saves only when that attribute is set, so
    a subclass whose ``experiment`` makes its own writer (RunCSVLogger appends to earlier sessions' rows) must keep it
    there; CSVLogger has no public way to hand it a writer.
    """
    return logger._experiment


def set_csv_writer(logger: CSVLogger, writer: Any) -> None:
    """Stores ``writer`` as the CSVLogger's writer (see ``csv_writer``)."""
    logger._experiment = writer


# -- torchmetrics: the FID Inception ------------------------------------------------------------------------------------
def fid_inception_class() -> type:
    """torchmetrics' FID Inception network (torch-fidelity's weights, antialiased resize to 299, never in training mode).

    Reaches into: ``torchmetrics.image.fid.NoTrainInceptionV3``, a class torchmetrics uses inside its FID but does not
    document or export from ``torchmetrics.image``. Why: it is the exact extractor of torchmetrics' FID, so our
    features (and FID/KID/precision-recall) equal torchmetrics' own; torch-fidelity's public
    ``FeatureExtractorInceptionV3`` resizes differently (TF1 bilinear) and would change every number.
    Raises ImportError when torchmetrics no longer has it.
    """
    from torchmetrics.image.fid import NoTrainInceptionV3

    return NoTrainInceptionV3


# -- jsonargparse / argparse: parsers and their messages ----------------------------------------------------------------
def parser_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The actions (options) a parser defines, nested groups included.

    Reaches into: argparse's ``ArgumentParser._actions``, which jsonargparse's parser keeps. Why: neither argparse
    nor jsonargparse lists a parser's options publicly (``get_default`` raises for groups and for keys without
    a default), and the typo suggestions and the shared-option check need every one.
    """
    return list(parser._actions)


# jsonargparse's English messages, parsed to turn a refusal into one sentence that names the key.
UNRECOGNIZED_ARGUMENTS = re.compile(r"unrecognized arguments: (.*)", re.IGNORECASE | re.DOTALL)
OPTION_NOT_ACCEPTED = re.compile(r"Option '([^']+)' is not accepted")
EXPECTED_ONE_ARGUMENT = re.compile(r"argument (--[^\s/:]+)(?:/\S+)?: expected one argument")
PARSER_KEY = re.compile(r'^( *)Parser key "([^"]+)":', re.MULTILINE)
RESTRICTION = re.compile(r"Not of type (\w+): (.*) does not conform to restriction (.+)")
GOT_VALUE = re.compile(r"(.*?)\.? Got value: (.*)$")


def unrecognized_arguments(message: str) -> str | None:
    """The arguments of argparse's/jsonargparse's "unrecognized arguments: …" message, or None.

    Reaches into: the wording of the error message (no error code or exception attribute carries the arguments).
    """
    match = UNRECOGNIZED_ARGUMENTS.match(message)
    return match.group(1) if match else None


def option_not_accepted(message: str) -> str | None:
    """The key of jsonargparse's "Option 'KEY' is not accepted" (an init argument the class does not take), or None."""
    match = OPTION_NOT_ACCEPTED.search(message)
    return match.group(1) if match else None


def refused_class_path(line: str, before: str) -> str | None:
    """The class that refused a key: the last ``class_path='X'`` on the "not accepted" line, else the last
    ``class_path 'X'`` in the message up to it (jsonargparse words the two cases differently)."""
    classes = re.findall(r"class_path='([\w.]+)'", line) or re.findall(r"class_path '([\w.]+)'", before)
    return classes[-1] if classes else None


def option_without_value(message: str) -> str | None:
    """The option of argparse's "argument --X: expected one argument" message, or None."""
    match = EXPECTED_ONE_ARGUMENT.match(message)
    return match.group(1) if match else None


def parser_key_lines(message: str) -> list[re.Match[str]]:
    """Each ``Parser key "KEY":`` line of a jsonargparse validation message (group 1: indent, group 2: key)."""
    return list(PARSER_KEY.finditer(message))


def restriction_failure(cause: str) -> tuple[str, str, str] | None:
    """(type name, value, restriction) of jsonargparse.typing's "Not of type T: V does not conform to restriction R"."""
    match = RESTRICTION.match(cause)
    return (match.group(1), match.group(2), match.group(3)) if match else None


def got_value(cause: str) -> tuple[str, str] | None:
    """(cause, value) of jsonargparse's "Expected a <class 'list'>. Got value: V", or None."""
    match = GOT_VALUE.match(cause)
    return (match.group(1), match.group(2)) if match else None
