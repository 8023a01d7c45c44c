"""One canary per item of lightning_gen/compat.py: a release that moves what it reaches into fails here, by name.

And a scan of lightning_gen/ for private attributes or imports of Lightning, jsonargparse, torchmetrics,
torch-fidelity and wandb outside compat.py, so a new use turns this file red.
"""

from __future__ import annotations

import argparse
import ast
import calendar
import importlib
import inspect
import re
from pathlib import Path
from typing import Optional

import lightning.pytorch as pl
import pytest
import torch
from jsonargparse import ArgumentParser
from jsonargparse.typing import PositiveInt
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import CSVLogger
from torch.optim.swa_utils import AveragedModel

from lightning_gen import compat
from lightning_gen.console.option_errors import ExplainingParser, ParseFailure

PACKAGE = Path(compat.__file__).parent


def canary(item: str, condition: bool, what: str) -> None:
    assert condition, f"compat item {item} broke: {what}; lightning_gen/compat.py says what it relies on."


# -- Lightning --------------------------------------------------------------------------------------------------------
def test_canary_lightning_cli_parse_ckpt_path():
    item = "LightningCLIWithoutCheckpointHparams (LightningCLI._parse_ckpt_path)"
    canary(item, callable(getattr(LightningCLI, "_parse_ckpt_path", None)), "LightningCLI has no _parse_ckpt_path")
    canary(item, "self._parse_ckpt_path()" in inspect.getsource(LightningCLI.__init__), "LightningCLI.__init__ no longer calls it")
    canary(item, "hyper_parameters" in inspect.getsource(LightningCLI._parse_ckpt_path), "it no longer merges hyper_parameters")
    canary(item, compat.LightningCLIWithoutCheckpointHparams._parse_ckpt_path is not LightningCLI._parse_ckpt_path, "not overridden")


class Recorder(pl.Callback):
    def __init__(self) -> None:
        self.seen: list[tuple[int, int, int, bool]] = []
        self.last: list[bool] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.last.append(compat.is_last_training_batch(trainer))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append(
            (batch_idx, compat.batches_fetched_in_run(trainer), compat.batches_processed_in_epoch(trainer), compat.logs_this_step(trainer))
        )


def fit_boring(tmp_path: Path, callbacks: list[pl.Callback], steps: int = 4, epochs: int = 2, batches: int = 3) -> pl.Trainer:
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        max_epochs=epochs,
        max_steps=steps,
        limit_train_batches=batches,
        limit_val_batches=0,
        log_every_n_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        accelerator="cpu",
    )
    trainer.fit(BoringModel())
    return trainer


def test_canary_loop_progress_counters_and_logging_rule(tmp_path):
    recorder = Recorder()
    fit_boring(tmp_path, [recorder], steps=5, batches=3)
    fetched = [row[1] for row in recorder.seen]
    canary("batches_fetched_in_run (batch_progress.total.ready)", fetched == [1, 2, 3, 4, 5], f"counted {fetched}")
    processed = [row[2] for row in recorder.seen]
    canary("batches_processed_in_epoch (batch_progress.current.processed)", processed == [0, 1, 2, 0, 1], f"counted {processed}")
    logs = [row[3] for row in recorder.seen]
    # log_every_n_steps=2: Lightning writes at batches_that_stepped + 1 = 2, 4.
    expected = [False, True, False, True, False]
    canary("logs_this_step (trainer._logger_connector.should_update_logs)", logs == expected, f"said {logs}, not {expected}")
    last = [False, False, True, False, False]  # 3 batches an epoch; the run stops at step 5
    canary("is_last_training_batch (batch_progress.is_last_batch)", recorder.last == last, f"said {recorder.last}")


def test_canary_forget_unfinished_batch(tmp_path):
    trainer = fit_boring(tmp_path, [], steps=2)
    progress = trainer.fit_loop.epoch_loop.batch_progress
    progress.increment_ready()  # a batch fetched, its step not finished
    progress.increment_started()
    compat.forget_unfinished_batch(trainer)
    item = "forget_unfinished_batch (batch_progress.current/.total.reset_on_restart)"
    canary(item, (progress.total.ready, progress.total.started) == (2, 2), f"total counters {progress.total}")
    canary(item, (progress.current.ready, progress.current.started) == (2, 2), f"epoch counters {progress.current}")


def test_canary_weight_averaging_average_model(tmp_path):
    averaging = WeightAveraging()
    fit_boring(tmp_path, [averaging], steps=2)
    item = "averaged_model (WeightAveraging._average_model)"
    canary(item, isinstance(compat.averaged_model(averaging), AveragedModel), "not an AveragedModel after a fit")
    canary(item, int(compat.averaged_model(averaging).n_averaged) == 2, "its n_averaged does not count the updates")
    # EMA reads and writes the last averaged step through the public state_dict / load_state_dict.
    averaging.load_state_dict({"latest_update_step": 7})
    canary("EMA: WeightAveraging.state_dict()['latest_update_step']", averaging.state_dict() == {"latest_update_step": 7}, "changed")
    canary(
        "EMA: WeightAveraging.on_train_batch_end",
        "_latest_update_step" in inspect.getsource(WeightAveraging.on_train_batch_end),
        "the rule EMA.on_train_batch_end copies changed",
    )


def test_canary_csv_logger_writer(tmp_path):
    item = "csv_writer/set_csv_writer (CSVLogger._experiment)"
    logger = CSVLogger(tmp_path, name="", version="")
    canary(item, compat.csv_writer(logger) is None, "set before the first experiment")
    writer = logger.experiment
    canary(item, compat.csv_writer(logger) is writer, "experiment no longer stores its writer there")
    canary(item, "self._experiment" in inspect.getsource(CSVLogger.finalize), "finalize no longer looks there")
    compat.set_csv_writer(logger, "other")
    canary(item, logger.experiment == "other", "experiment no longer returns the stored writer")


# -- torchmetrics -------------------------------------------------------------------------------------------------------
def test_canary_fid_inception_class():
    item = "fid_inception_class (torchmetrics.image.fid.NoTrainInceptionV3)"
    try:
        cls = compat.fid_inception_class()
    except ImportError as error:
        pytest.fail(f"compat item {item} broke: {error}")
    canary(item, issubclass(cls, torch.nn.Module), "not a torch module")
    parameters = inspect.signature(cls).parameters
    canary(item, {"name", "features_list", "feature_extractor_weights_path"} <= set(parameters), f"takes {list(parameters)}")
    canary(item, hasattr(cls, "_torch_fidelity_forward"), "no longer torchmetrics' antialiased forward")


# -- jsonargparse / argparse ------------------------------------------------------------------------------------------
class Widget:
    def __init__(self, size: PositiveInt = 1, values: Optional[list[int]] = None, counts: list[int] = [1]):  # noqa: B006
        pass


def refusal(*args: str) -> str:
    parser = ExplainingParser(exit_on_error=True, prog="prog")
    parser.add_argument("--name", type=str)
    parser.add_subclass_arguments(calendar.Calendar, "cal", required=False)
    parser.add_class_arguments(Widget, "widget")
    with pytest.raises(ParseFailure) as failure:
        parser.parse_args(list(args))
    return failure.value.message


def test_canary_parser_actions():
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--top", type=int)
    parser.add_class_arguments(Widget, "widget")
    actions = compat.parser_actions(parser)
    item = "parser_actions (argparse ArgumentParser._actions)"
    canary(item, all(isinstance(action, argparse.Action) for action in actions), "not argparse actions")
    dests = {action.dest for action in actions}
    canary(item, {"top", "widget.size", "widget.values"} <= dests, f"dests {sorted(dests)}")
    canary(item, "--widget.size" in {option for action in actions for option in action.option_strings}, "no --widget.size")


def test_canary_unrecognized_arguments_message():
    message = refusal("--nope", "1")
    canary("unrecognized_arguments", compat.unrecognized_arguments(message) == "--nope 1", f"jsonargparse now says {message!r}")


def test_canary_option_not_accepted_message_and_its_class():
    message = refusal("--cal", "calendar.TextCalendar", "--cal.init_args.nope", "1")
    canary("option_not_accepted", compat.option_not_accepted(message) == "nope", f"jsonargparse now says {message!r}")
    line = next(line for line in message.splitlines() if "Option 'nope' is not accepted" in line)
    before = message[: message.index(line) + len(line)]
    found = compat.refused_class_path(line, before)
    canary("refused_class_path", found == "calendar.TextCalendar", f"found {found} in {message!r}")


def test_canary_option_without_value_message():
    message = refusal("--name", "-x")
    canary("option_without_value", compat.option_without_value(message) == "--name", f"argparse now says {message!r}")


def test_canary_parser_key_and_restriction_messages():
    message = refusal("--widget.size", "0")
    keys = [match.group(2) for match in compat.parser_key_lines(message)]
    canary("parser_key_lines", keys == ["widget.size"], f"found {keys} in {message!r}")
    cause = message.splitlines()[-1].strip()
    restricted = compat.restriction_failure(cause)
    canary("restriction_failure", restricted == ("PositiveInt", "0", "v>0"), f"found {restricted} in {message!r}")


def test_canary_list_messages_still_name_the_expected_type():
    message = refusal("--widget.counts", "a,b")
    canary("one_sentence: 'Expected a <class 'list'>'", "Expected a <class 'list'>" in message, f"jsonargparse now says {message!r}")
    got = compat.got_value("Expected a <class 'list'>. Got value: -1,0,1")
    canary("got_value", got == ("Expected a <class 'list'>", "-1,0,1"), f"parsed {got}")


def test_the_one_sentence_errors_still_read_jsonargparse_right():
    from lightning_gen.console.option_errors import explain, one_sentence

    failure = ParseFailure(refusal("--widget.size", "0"), ExplainingParser(prog="prog"))
    assert one_sentence(failure.message) == "--widget.size 0 is not valid: expected a positive whole number."
    parser = ExplainingParser(exit_on_error=True, prog="prog")
    parser.add_argument("--name", type=str)
    with pytest.raises(ParseFailure) as caught:
        parser.parse_args(["--nmae", "x"])
    assert str(explain(caught.value, ["--nmae", "x"], "prog")) == (
        "--nmae is not an option; did you mean --name? (`prog --help` lists them all)"
    )


# -- no private use outside compat.py ------------------------------------------------------------------------------------
LIBRARIES = ("lightning", "pytorch_lightning", "jsonargparse", "torchmetrics", "torch_fidelity", "wandb")
# Private names of other libraries (torch's) that lightning_gen uses knowingly, each with its file.
ALLOWED_ANYWHERE = {"_foreach_copy_", "_foreach_lerp_"}  # torch's fused tensor-list ops (torch.optim's foreach path)
ALLOWED = {
    ("callbacks/run_state.py", "_last_lr"),  # torch LRScheduler's (owned by the run-state code, not by compat)
}


def allowed(relative: str, name: str) -> bool:
    return name in ALLOWED_ANYWHERE or (relative, name) in ALLOWED


def imported_names(tree: ast.AST) -> dict[str, str]:
    """``name`` → the dotted path it was imported as (``pl`` → ``lightning.pytorch``, ``Timer`` → ``lightning...Timer``)."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update({alias.asname or alias.name: f"{node.module}.{alias.name}" for alias in node.names})
        elif isinstance(node, ast.Import):
            names.update({alias.asname or alias.name: alias.name for alias in node.names})
    return names


def dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def library_class(path: str) -> type | None:
    module_name, _, name = path.rpartition(".")
    if module_name.split(".")[0] not in LIBRARIES:
        return None
    try:
        value = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        module_name, _, parent = module_name.rpartition(".")  # pl.callbacks.X: a class two attributes down
        try:
            value = getattr(getattr(importlib.import_module(module_name), parent), name)
        except (ImportError, AttributeError, ValueError):
            return None
    return value if isinstance(value, type) else None


SELF_PRIVATE = re.compile(r"\bself\.(_[a-zA-Z]\w*)|^\s*def (_[a-zA-Z]\w*)", re.MULTILINE)


def inherited_privates(cls: type) -> set[str]:
    """The private attributes and methods the library classes of ``cls``'s MRO use on ``self``."""
    names: set[str] = set()
    for base in inspect.getmro(cls):
        if base.__module__.split(".")[0] in LIBRARIES:
            try:
                names |= {a or b for a, b in SELF_PRIVATE.findall(inspect.getsource(base))}
            except (OSError, TypeError):
                continue
    return {name for name in names if not name.startswith("__")}


def class_privates(trees: dict[Path, ast.AST]) -> dict[ast.ClassDef, set[str]]:
    """Each lightning_gen class that derives (directly or through ours) from a library class, with the private
    names it inherits from it."""
    classes = {
        node.name: (node, imported_names(tree)) for tree in trees.values() for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
    }
    found: dict[ast.ClassDef, set[str]] = {}

    def privates(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        node, imports = classes[name]
        names: set[str] = set()
        for base in node.bases:
            written = dotted(base)
            if written is None:
                continue
            head, _, rest = written.partition(".")
            if head in classes and not rest and head not in seen:
                names |= privates(head, seen | {name})
            elif head in imports:
                cls = library_class(imports[head] + (f".{rest}" if rest else ""))
                names |= inherited_privates(cls) if cls is not None else set()
        return names

    for name, (node, _) in classes.items():
        names = privates(name)
        if names:
            found[node] = names
    return found


def own_private_names(trees: dict[Path, ast.AST], inherited: set[str]) -> set[str]:
    """Private names lightning_gen defines itself (functions, classes, attributes it assigns), not inherited ones."""
    names: set[str] = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
    return {name for name in names if name.startswith("_")} - inherited


def private_uses(path: Path, tree: ast.AST, own: set[str], subclasses: dict[ast.ClassDef, set[str]]) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in LIBRARIES:
            private_module = any(part.startswith("_") for part in node.module.split("."))
            if private_module or any(alias.name.startswith("_") for alias in node.names):
                found.append(f"{path}:{node.lineno} from {node.module} import {', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] in LIBRARIES and any(part.startswith("_") for part in parts):
                    found.append(f"{path}:{node.lineno} import {alias.name}")
        elif isinstance(node, ast.Attribute):
            name = node.attr
            if name.startswith("_") and not name.startswith("__") and name not in own:
                found.append(f"{path}:{node.lineno} .{name}")
        elif isinstance(node, ast.ClassDef) and node in subclasses:
            overridden = [item for item in node.body if isinstance(item, ast.FunctionDef) and item.name in subclasses[node]]
            found += [f"{path}:{item.lineno} def .{item.name}" for item in overridden]
    return sorted(set(found), key=lambda use: (int(use.split(":")[1].split()[0]), use))


def scan(package: Path) -> list[str]:
    trees = {path: ast.parse(path.read_text(), str(path)) for path in sorted(package.rglob("*.py"))}
    subclasses = class_privates(trees)
    own = own_private_names(trees, set().union(*subclasses.values()) if subclasses else set())
    found = []
    for path, tree in trees.items():
        relative = path.relative_to(package).as_posix()
        if relative != "compat.py":
            found += [use for use in private_uses(Path(relative), tree, own, subclasses) if not allowed(relative, use.rsplit(".", 1)[-1])]
    return found


def test_no_private_library_use_outside_compat():
    found = scan(PACKAGE)
    assert not found, "private attributes/imports of other libraries outside lightning_gen/compat.py:\n" + "\n".join(found)


def test_the_scan_finds_the_uses_it_is_meant_to_find(tmp_path):
    (tmp_path / "x.py").write_text(
        "from lightning.fabric.utilities.types import _PATH\n"
        "import lightning.pytorch as pl\n"
        "from lightning.pytorch.callbacks import WeightAveraging\n"
        "from lightning.pytorch.cli import LightningCLI\n"
        "class CLI(LightningCLI):\n"
        "    def _parse_ckpt_path(self):\n"
        "        return None\n"
        "class Model(pl.LightningModule):\n"
        "    def f(self, trainer, parser):\n"
        "        self._mine = 1\n"
        "        return trainer._logger_connector, parser._actions, self._trainer, self._mine\n"
        "class Average(WeightAveraging):\n"
        "    def g(self):\n"
        "        self._latest_update_step = 3\n"
    )
    assert [use.split(":", 1)[1] for use in scan(tmp_path)] == [
        "1 from lightning.fabric.utilities.types import _PATH",
        "6 def ._parse_ckpt_path",
        "11 ._actions",
        "11 ._logger_connector",
        "11 ._trainer",
        "14 ._latest_update_step",
    ]
