"""Command-line mistakes as one sentence: a misspelt option is named with the closest valid ones (difflib).

jsonargparse prints the whole usage (~70 lines) with the cause at the end; ``ExplainingParser`` raises
``ParseFailure`` instead, and ``explain`` turns it into a UserError the CLI prints as one line.
"""

from __future__ import annotations

import difflib
import errno
import importlib
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from jsonargparse import ArgumentParser
from lightning.pytorch.cli import LightningArgumentParser

from lightning_gen.compat import (
    got_value,
    option_not_accepted,
    option_without_value,
    parser_actions,
    parser_key_lines,
    refused_class_path,
    restriction_failure,
    unrecognized_arguments,
)
from lightning_gen.console.help import ShowAllHelp, short_help_formatter
from lightning_gen.errors import UserError

# A negative number or a comma-separated list of numbers that starts with one: -1, -0.5, -2,-1,0,1,2, -1e-3.
_NUMBER = r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_DASH_NUMBERS = re.compile(rf"-(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?:,\s*{_NUMBER})*,?")


def join_dash_values(argv: Sequence[str]) -> list[str]:
    """``--opt -1,0,1`` → ``--opt=-1,0,1``: a value that starts with a minus is otherwise taken by argparse
    for an option ("expected one argument"), unless it is one plain negative number.

    Joined: an option token (``--name``, no ``=``) followed by a negative number or a comma-separated list of
    numbers starting with one, which no option of ours looks like; such a list is what list- and str-typed
    options take (``edit --strengths``, ``--images.edit_strengths``). Anything else is left as typed (a
    free-text value that starts with ``-`` still needs ``--opt=VALUE``, and the error says so).
    """
    argv = [str(token) for token in argv]
    joined: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        following = argv[index + 1] if index + 1 < len(argv) else None
        if token.startswith("--") and "=" not in token and len(token) > 2 and following is not None and _DASH_NUMBERS.fullmatch(following):
            joined.append(f"{token}={following}")
            index += 2
        else:
            joined.append(token)
            index += 1
    return joined


class ParseFailure(Exception):
    """The command line did not parse; ``parser`` is the (sub)command's parser that refused it."""

    def __init__(self, message: str, parser: ArgumentParser):
        super().__init__(message)
        self.message, self.parser = message, parser


def raise_parse_failure(parser: ArgumentParser, message: str, ex: Exception | None = None) -> NoReturn:
    raise ParseFailure(message, parser) from ex


class ExplainingParser(LightningArgumentParser):
    """The CLI's parser: a mistake raises ParseFailure (one sentence, see ``explain``); no abbreviated options
    (``--trainer.max_epoch`` is refused with "did you mean --trainer.max_epochs", never taken as it);
    ``--opt -1,0,1`` parses as ``--opt=-1,0,1`` (``join_dash_values``).

    ``short_help=True`` (the commands' and fit's parsers): ``--help`` shows the command's own options in full
    and the shared groups one line each, ``short_help_first`` (fit: model, data) summarised first;
    ``--help-all`` shows argparse's full help (see lightning_gen.console.help).
    """

    def __init__(self, *args: Any, short_help: bool = False, short_help_first: Sequence[str] = (), **kwargs: Any):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.short_help, self.short_help_first, self.show_all_help = short_help, tuple(short_help_first), False
        if short_help:
            self.add_argument(
                "--help-all",
                action=ShowAllHelp,
                help="Show every option, those of the shared groups (trainer, model, data, ...) too, and exit.",
            )

    def parse_args(self, args: Sequence[str] | None = None, *rest: Any, **kwargs: Any) -> Any:
        return super().parse_args(join_dash_values(sys.argv[1:] if args is None else args), *rest, **kwargs)

    def format_help(self, *args: Any, **kwargs: Any) -> str:
        if not self.short_help or self.show_all_help:
            return super().format_help(*args, **kwargs)
        full_formatter = self.formatter_class
        self.formatter_class = short_help_formatter(full_formatter, self.prog, self.short_help_first)
        try:
            return super().format_help(*args, **kwargs)
        finally:
            self.formatter_class = full_formatter

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:  # jsonargparse's inner parsers: it catches these while trying alternatives
            super().error(message, ex)
        raise_parse_failure(self, message, ex)


def _typed_options(argv: list[str]) -> list[str]:
    return [token.split("=", 1)[0] for token in argv if token.startswith("--")]


def _useful(options: list[str]) -> list[str]:
    """Leaves out ``--x.help`` and whole groups (``--tracking`` beside ``--tracking.name``): never what was meant."""
    options = [option for option in options if not option.endswith(".help")]
    return [option for option in options if not any(other.startswith(option + ".") for other in options)]


def _long_options(parser: ArgumentParser) -> list[str]:
    return _useful([option for action in parser_actions(parser) for option in action.option_strings if option.startswith("--")])


def _class_parameters(class_path: str) -> list[str]:
    """The init parameters of a class the user's config named (jsonargparse already imported it)."""
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
        probe = ArgumentParser(exit_on_error=False)
        probe.add_class_arguments(cls, fail_untyped=False, sub_configs=True)
        return [action.dest for action in parser_actions(probe) if action.dest not in ("help", "config")]
    except Exception:  # only for suggestions: without them the sentence still names the option
        return []


def _sentence(typed: str, owner: str, candidates: list[str], help_hint: str) -> str:
    close = difflib.get_close_matches(typed, candidates, n=3, cutoff=0.6)
    if not close:
        return f"{typed} is not an option{owner}; {help_hint} lists the valid ones."
    listed = close[0] if len(close) == 1 else ", ".join(close[:-1]) + " or " + close[-1]
    return f"{typed} is not an option{owner}; did you mean {listed}? ({help_hint} lists them all)"


def explain(failure: ParseFailure, argv: list[str], program: str) -> UserError:
    message = failure.message.strip()
    prog = failure.parser.prog.replace(" [options]", "") or program
    help_hint = f"`{prog} --help`"
    unrecognized = unrecognized_arguments(message)
    if unrecognized is not None:
        typed = next((token.split("=", 1)[0] for token in unrecognized.split() if token.startswith("-")), None)
        if typed is None:
            return UserError(f"{prog} does not take the argument(s) {unrecognized.strip()}; {help_hint} lists what it takes.")
        return UserError(_sentence(typed, "", _long_options(failure.parser), help_hint))
    key = option_not_accepted(message)
    if key is not None:
        line = next(line for line in message.splitlines() if f"Option '{key}' is not accepted" in line)
        before = message[: message.index(line) + len(line)]
        class_path = refused_class_path(line, before)
        typed_key = next((option[2:] for option in _typed_options(argv) if option[2:] == key or option[2:].endswith("." + key)), None)
        if typed_key is None:  # the key came from a --config file
            owner = f" of {class_path}" if class_path else ""
            return UserError(
                _sentence(key, owner, _class_parameters(class_path) if class_path else [], f"{help_hint} or the config's docs")
            )
        prefix = typed_key[: len(typed_key) - len(key)]
        candidates = _useful([f"--{prefix}{name}" for name in (_class_parameters(class_path) if class_path else [])])
        return UserError(_sentence(f"--{typed_key}", f" of {class_path}" if class_path else "", candidates, help_hint))
    option = option_without_value(message)
    if option is not None:  # "--tracking.name -x": argparse took -x for an option
        value = next((argv[index + 1] for index, token in enumerate(argv[:-1]) if token == option), None)
        if value is not None and value.startswith("-"):
            return UserError(
                f"{option} needs a value and {value} was read as an option; write {option}={value} (with =) "
                f"for a value that starts with '-'."
            )
        return UserError(f"{option} needs a value; {help_hint} says what it takes.")
    return UserError(one_sentence(message, prefix=f"{prog}: "))


def whole_number(value: Any, key: str, minimum: int = 1) -> int:
    """``value`` as a plain ``int``, or a UserError naming ``key`` (e.g. ``data.batch_size``) when it is no whole
    number of at least ``minimum``.

    The constructors' ``PositiveInt`` annotations refuse such a value already while the command line is
    parsed; this check is for code that builds the class directly, and the plain ``int`` keeps jsonargparse's
    ``PositiveInt`` subclass out of what a weights-only checkpoint must hold (the data facts, hparams).
    """
    whole = isinstance(value, int) or isinstance(value, float) and value.is_integer()
    if isinstance(value, bool) or not whole or value < minimum:
        least = "a positive whole number" if minimum == 1 else f"a whole number of at least {minimum}"
        raise UserError(f"{key} must be {least}, got {value!r}.")
    return int(value)


# torch.optim's ValueError messages ("Invalid learning rate: -1") and the init_args key each one is about.
_OPTIMIZER_SETTINGS = {
    "learning rate": "lr",
    "epsilon": "eps",
    "beta": "betas",
    "weight_decay": "weight_decay",
    "momentum": "momentum",
    "dampening": "dampening",
    "alpha": "alpha",
    "rho": "rho",
    "lr_decay": "lr_decay",
}


def check_optimizer(optimizer: Any, key: str = "model.init_args.optimizer") -> None:
    """Builds ``optimizer`` (the model's factory) once, on a one-element probe parameter: a setting torch.optim
    refuses (``lr: -1`` → "Invalid learning rate: -1") is then one sentence naming ``KEY.init_args.lr`` when
    the model is built, not a traceback from ``configure_optimizers`` once the run has started. Any other
    error is left for the real parameters to raise."""
    import torch

    try:
        optimizer([torch.nn.Parameter(torch.zeros(1))])
    except ValueError as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        # The optimizer class that refused: the one whose __init__ raised (the factory may be a jsonargparse partial).
        refusing = [frame.f_locals.get("self") for frame, _ in traceback.walk_tb(error.__traceback__)]
        cls = next((type(obj) for obj in reversed(refusing) if isinstance(obj, torch.optim.Optimizer)), None)
        name = f"{cls.__module__}.{cls.__qualname__}" if cls is not None else "the optimizer"
        setting = next((arg for words, arg in _OPTIMIZER_SETTINGS.items() if words in message.lower()), None)
        if setting is None:
            raise UserError(
                f"{name} refuses the settings in {key}.init_args ({message.rstrip('.')}); fix them in the "
                f"config or with --{key}.init_args.* options."
            ) from None
        value = message.rsplit(":", 1)[-1].strip() if ":" in message else None
        given = f" {value}" if value else ""
        hint = "a positive learning rate such as 1e-3" if setting == "lr" else "a value it accepts"
        raise UserError(
            f"--{key}.init_args.{setting}{given} is not valid: {name} refuses it ({message.rstrip('.')}); set {hint}."
        ) from None
    except Exception:
        return


# jsonargparse.typing's restricted numbers ("Not of type PositiveInt: 0 does not conform to restriction v>0") in words.
_RESTRICTED = {
    "PositiveInt": "a positive whole number",
    "NonNegativeInt": "a whole number of 0 or more",
    "PositiveFloat": "a positive number",
    "NonNegativeFloat": "a number of 0 or more",
    "ClosedUnitInterval": "a number from 0 to 1",
    "OpenUnitInterval": "a number between 0 and 1",
}


def _nested_key(message: str) -> tuple[str, int] | None:
    """The dotted key of the innermost ``Parser key "..."`` of a jsonargparse message, with where its cause starts:
    ``data`` ⊃ (class_path ShapesDataModule) ``batch_size`` → ``data.init_args.batch_size``."""
    matches = parser_key_lines(message)
    if not matches:
        return None
    chain = [matches[-1]]
    for match in reversed(matches[:-1]):  # the enclosing keys: each indented less than the one inside it
        if len(match.group(1)) < len(chain[0].group(1)):
            chain.insert(0, match)
    key = chain[0].group(2)
    for outer, inner in zip(chain, chain[1:]):
        key += (".init_args." if "class_path" in message[outer.end() : inner.start()] else ".") + inner.group(2)
    return key, chain[-1].end()


def one_sentence(message: str, prefix: str = "") -> str:
    """A multi-line or multi-sentence message from a library as one line: its key and most specific cause."""
    nested = _nested_key(message) if re.match(r'Parser key "', message) else None
    generic = (
        "Does not validate against any of the Union subtypes",
        "Subtypes:",
        "Errors:",
        "Given value type:",
        "- Expected a <class 'NoneType'>",
    )
    lines = [line.strip() for line in (message[nested[1] :] if nested else message).splitlines() if line.strip()]
    causes = [
        line.lstrip("- ").rstrip(".:")
        for line in lines
        if not line.startswith(generic) and not line.startswith(("Given value:", "Parser key "))
    ]
    given = next((line[len("Given value:") :].strip() for line in lines if line.startswith("Given value:")), None)
    cause = causes[-1] if causes else (lines[0] if lines else message)
    got = got_value(cause)
    if got is not None:  # "Expected a <class 'list'>. Got value: -1,0,1"
        cause, given = got[0], given or got[1]
    if cause == "Expected a <class 'list'>" and given and not given.lstrip().startswith("["):
        cause = f"expected a list, written [{given}]"
    restricted = restriction_failure(cause)
    if restricted is not None:
        type_name, given, restriction = restricted
        cause = f"expected {_RESTRICTED.get(type_name) or type_name + ' (' + restriction + ')'}"
    text = (f"--{nested[0]} " + (f"{given} " if given and "NestedArg" not in given else "") + f"is not valid: {cause}") if nested else cause
    text = re.sub(r"Expected a <class '([\w.]+)'>", r"expected \1", text)
    text = re.sub(r"\.\s+(?=\S)", "; ", text.strip()).rstrip(".")
    return f"{prefix}{text}."


# -- errors of the machine, not of the command line: memory and the file system ------------------------------------
_ONLY_ON_WRITING = {errno.EROFS, errno.ENOSPC, getattr(errno, "EDQUOT", -1)}
_WRITE_ERRORS = {errno.EACCES, errno.EPERM, errno.ENOTDIR, *_ONLY_ON_WRITING}


def _chain(error: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while error is not None and all(error is not other for other in seen):
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def _size(text: str) -> str:
    """``13421772800 bytes`` → ``12.5 GiB``; ``2.00 GiB`` stays."""
    number = re.match(r"(\d+) bytes", text)
    if not number:
        return text
    size = float(number.group(1))
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return text


def out_of_memory(error: BaseException) -> tuple[str, str | None] | None:
    """(``CPU``/``GPU`` memory, the size that could not be allocated) when ``error`` or one in its chain is an
    allocation failure: torch.OutOfMemoryError (CUDA), "DefaultCPUAllocator: can't allocate memory", MPS's."""
    import torch

    oom_class = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    for cause in _chain(error):
        message = str(cause)
        cpu = "DefaultCPUAllocator: can't allocate memory" in message or isinstance(cause, MemoryError)
        if isinstance(cause, oom_class) or (isinstance(cause, RuntimeError) and (cpu or re.search(r"\bout of memory\b", message))):
            tried = re.search(r"tried to allocate ([\d.]+ ?\w+)", message, re.IGNORECASE)
            return ("CPU" if cpu else "GPU"), (_size(tried.group(1)) if tried else None)
        if isinstance(cause, MemoryError):
            return "CPU", None
    return None


def memory_sentence(memory: str, size: str | None, option: str, value: int | None) -> str:
    """One sentence: which memory ran out, at which size, and what to lower."""
    tried = f" (an allocation of {size} failed)" if size else ""
    if value is None:
        return f"ran out of {memory} memory{tried}; lower {option}."
    smaller = f", say to {option} {max(1, value // 2)}" if value > 1 else ""
    return f"ran out of {memory} memory with {option} {value}{tried}; lower it{smaller}, or use a smaller model."


def _file_in_the_way(path: Path) -> Path | None:
    """The regular file where ``path`` or one of its parents must be a folder, if any."""
    return next((folder for folder in (path, *path.parents) if folder.exists() and not folder.is_dir()), None)


def write_error(error: BaseException) -> OSError | None:
    """The OSError in ``error``'s chain that a folder no one may write raises, or a file where a folder must be
    (ENOTDIR; EEXIST from ``mkdir(exist_ok=True)`` on a file)."""
    for cause in _chain(error):
        if isinstance(cause, OSError) and cause.filename:
            in_the_way = cause.errno == errno.EEXIST and _file_in_the_way(Path(os.fsdecode(cause.filename))) is not None
            if cause.errno in _WRITE_ERRORS or in_the_way:
                return cause
    return None


def write_sentence(error: OSError, hint: str) -> str:
    path = Path(os.fsdecode(error.filename))
    blocking = _file_in_the_way(path)
    if error.errno in (errno.ENOTDIR, errno.EEXIST) and blocking is not None:
        return f"cannot create {path}: {blocking} is a file, not a folder; {hint}."
    reason = {
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "a read-only file system",
        errno.ENOSPC: "the disk is full",
    }.get(error.errno, (error.strerror or type(error).__name__).lower())
    return f"cannot write {path} ({reason}); {hint}."


@contextmanager
def explained_resource_errors(batch: Callable[[], tuple[str, int | None]], write_hint: Callable[[Path], str | None]) -> Iterator[None]:
    """Running out of memory or writing where one cannot, inside the block, becomes one UserError sentence.

    ``batch()`` → (the option that sets the size that must fit, its value), read only when memory ran out
    (fit: ``--data.init_args.batch_size``; sample: ``--num``); ``write_hint(path)`` → what to do about a path
    that cannot be written (a writable ``--trainer.default_root_dir``, ``--log_to_run false``), or None for a
    path the command does not write (a dataset file it could not read stays the library's error).
    """
    try:
        yield
    except UserError:
        raise
    except Exception as error:
        memory = out_of_memory(error)
        if memory is not None:
            try:
                option, value = batch()
            except Exception:  # the size is for the sentence only
                option, value = "the batch size", None
            raise UserError(memory_sentence(*memory, option, value)) from error
        refused = write_error(error)
        if refused is not None:
            path = Path(os.fsdecode(refused.filename))
            hint = write_hint(path)
            if hint is None and refused.errno in _ONLY_ON_WRITING:
                hint = "free space or choose another folder" if refused.errno != errno.EROFS else "choose a folder on a writable disk"
            if hint is not None:
                raise UserError(write_sentence(refused, hint)) from error
        raise
