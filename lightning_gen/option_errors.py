"""Command-line mistakes as one sentence: a misspelt option is named with the closest valid ones (difflib).

jsonargparse prints the whole usage (~70 lines) with the cause at the end; ``ExplainingParser`` raises
``ParseFailure`` instead, and ``explain`` turns it into a UserError the CLI prints as one line.
"""

from __future__ import annotations

import difflib
import importlib
import re
from typing import Any, NoReturn

from jsonargparse import ArgumentParser
from lightning.pytorch.cli import LightningArgumentParser

from lightning_gen.errors import UserError


class ParseFailure(Exception):
    """The command line did not parse; ``parser`` is the (sub)command's parser that refused it."""

    def __init__(self, message: str, parser: ArgumentParser):
        super().__init__(message)
        self.message, self.parser = message, parser


def raise_parse_failure(parser: ArgumentParser, message: str, ex: Exception | None = None) -> NoReturn:
    raise ParseFailure(message, parser) from ex


class ExplainingParser(LightningArgumentParser):
    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:  # jsonargparse's inner parsers: it catches these while trying alternatives
            super().error(message, ex)
        raise_parse_failure(self, message, ex)


def explaining(parser: ArgumentParser) -> ArgumentParser:
    """``parser`` (a command's, built elsewhere) raising ParseFailure instead of printing its usage and exiting."""
    parser.error = lambda message, ex=None: raise_parse_failure(parser, message, ex)  # type: ignore[method-assign]
    return parser


def _typed_options(argv: list[str]) -> list[str]:
    return [token.split("=", 1)[0] for token in argv if token.startswith("--")]


def _useful(options: list[str]) -> list[str]:
    """Leaves out ``--x.help`` and whole groups (``--tracking`` beside ``--tracking.name``): never what was meant."""
    options = [option for option in options if not option.endswith(".help")]
    return [option for option in options if not any(other.startswith(option + ".") for other in options)]


def _long_options(parser: ArgumentParser) -> list[str]:
    return _useful([option for action in parser._actions for option in action.option_strings if option.startswith("--")])


def _class_parameters(class_path: str) -> list[str]:
    """The init parameters of a class the user's config named (jsonargparse already imported it)."""
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
        probe = ArgumentParser(exit_on_error=False)
        probe.add_class_arguments(cls, fail_untyped=False, sub_configs=True)
        return [action.dest for action in probe._actions if action.dest not in ("help", "config")]
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
    unrecognized = re.match(r"unrecognized arguments: (.*)", message, re.IGNORECASE | re.DOTALL)
    if unrecognized:
        typed = next((token.split("=", 1)[0] for token in unrecognized.group(1).split() if token.startswith("-")), None)
        if typed is None:
            return UserError(f"{prog} does not take the argument(s) {unrecognized.group(1).strip()}; {help_hint} lists what it takes.")
        return UserError(_sentence(typed, "", _long_options(failure.parser), help_hint))
    not_accepted = re.search(r"Option '([^']+)' is not accepted", message)
    if not_accepted:
        key = not_accepted.group(1)
        line = next(line for line in message.splitlines() if not_accepted.group(0) in line)
        before = message[: message.index(line) + len(line)]
        classes = re.findall(r"class_path='([\w.]+)'", line) or re.findall(r"class_path '([\w.]+)'", before)
        class_path = classes[-1] if classes else None
        typed_key = next((option[2:] for option in _typed_options(argv) if option[2:] == key or option[2:].endswith("." + key)), None)
        if typed_key is None:  # the key came from a --config file
            owner = f" of {class_path}" if class_path else ""
            return UserError(_sentence(key, owner, _class_parameters(class_path) if class_path else [], f"{help_hint} or the config's docs"))
        prefix = typed_key[: len(typed_key) - len(key)]
        candidates = _useful([f"--{prefix}{name}" for name in (_class_parameters(class_path) if class_path else [])])
        return UserError(_sentence(f"--{typed_key}", f" of {class_path}" if class_path else "", candidates, help_hint))
    return UserError(one_sentence(message, prefix=f"{prog}: "))


def one_sentence(message: str, prefix: str = "") -> str:
    """A multi-line or multi-sentence message from a library as one line: its key and most specific cause."""
    key = re.match(r'Parser key "([^"]+)":', message)
    generic = ("Does not validate against any of the Union subtypes", "Subtypes:", "Errors:", "Given value type:", "- Expected a <class 'NoneType'>")
    lines = [line.strip() for line in (message[key.end() :] if key else message).splitlines() if line.strip()]
    causes = [line.lstrip("- ").rstrip(".:") for line in lines if not line.startswith(generic) and not line.startswith("Given value:")]
    given = next((line[len("Given value:") :].strip() for line in lines if line.startswith("Given value:")), None)
    cause = causes[-1] if causes else (lines[0] if lines else message)
    text = (f"--{key.group(1)} " + (f"{given} " if given and "NestedArg" not in given else "") + f"is not valid: {cause}") if key else cause
    text = re.sub(r"Expected a <class '([\w.]+)'>", r"expected \1", text)
    text = re.sub(r"\.\s+(?=\S)", "; ", text.strip()).rstrip(".")
    return f"{prefix}{text}."
