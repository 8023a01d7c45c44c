"""``COMMAND --help`` a person can read: the command's own options in full, fit's shared groups one line each.

Every command also parses fit's groups (``trainer`` alone has ~50 options), so argparse's full help runs to
~600 lines with the command's own ~20 lost among them. ``ExplainingParser(short_help=True)`` prints instead:
a one-line usage, the description, the command's own option groups in full and each shared group
(``--trainer.*``, ``--model``, ``--data``, ``--tracking.*``, ...) as one line; ``--help-all`` prints argparse's
full help as before. Built from argparse's public pieces: a ``formatter_class`` that receives the sections
``format_help`` adds and re-emits them, so jsonargparse still fills in types and defaults. Nothing is
instantiated: ``--help`` imports classes (to list the model and data classes) but builds no model or dataset.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

# One line for each of fit's groups; a group not listed here is described by the first sentence of its title.
SHARED_LABELS = {
    "trainer": "Trainer: max_epochs, devices, precision",
    "tracking": "where a run is shown: name, logger",
    "checkpointing": "checkpoints a run keeps: best-k, periodic",
    "snapshots": "weights-only safetensors snapshots",
    "guard": "skipping steps with non-finite losses",
    "ema": "exponential moving average of the weights",
    "images": "image grids logged at validation",
    "performance": "GPU speed: compile, channels_last, matmul precision",
}


class ShowAllHelp(argparse.Action):
    """``--help-all``: argparse's full help, every option of every group, then exit."""

    def __init__(
        self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, default: Any = argparse.SUPPRESS, help: str | None = None
    ):
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        parser.show_all_help = True
        parser.print_help()
        parser.exit()


def group_key(actions: Iterable[argparse.Action]) -> str | None:
    """The one top-level key all of a group's options sit under (``trainer`` for ``--trainer.*``), or None
    for a command's own group (several keys, none dotted)."""
    actions = list(actions)
    keys = {action.dest.split(".", 1)[0] for action in actions}
    if len(keys) == 1 and any("." in action.dest for action in actions):
        return keys.pop()
    return None


def _first_sentence(text: str | None) -> str:
    first = re.split(r"(?<=[.;:])\s", (text or "").strip(), maxsplit=1)[0].rstrip(".;:")
    return first[:1].lower() + first[1:]


CLASS_MODULES = {"model": "lightning_gen.models", "data": "lightning_gen.data"}
CLASS_EXAMPLES = {"model": "VAE", "data": "ShapesDataModule"}
CLASS_NOUNS = {"model": "model", "data": "datamodule"}

# An option whose help runs past LONG_HELP characters (Lightning's docstrings of fit's own arguments) is shown
# by this line, or its first sentence, in --help; --help-all shows it in full.
LONG_HELP = 240
LONG_HELP_SUMMARIES = {
    "ckpt_path": "a .ckpt file to continue from, or last: the newest run of this experiment",
    "weights_only": "checkpoints are always read as data only; false is refused",
}


# The bases a model or datamodule subclasses, not something to train.
BASE_CLASSES = ("ModelBase", "GenerativeModel", "GenerativeDataModule")


def _known_classes(key: str) -> list[str]:
    """The classes lightning_gen ships for ``--model`` / ``--data`` (imported, never instantiated)."""
    import importlib

    module_name = CLASS_MODULES.get(key)
    if not module_name:
        return []
    return [name for name in importlib.import_module(module_name).__all__ if name not in BASE_CLASSES]


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _summary_action(key: str, actions: list[argparse.Action], title: str | None, detailed: bool) -> argparse.Action:
    options = [
        action
        for action in actions
        if action.dest != key
        and not action.dest.endswith(".help")
        and action.help != argparse.SUPPRESS
        and action.dest.startswith(key + ".")
        and action.option_strings
    ]
    if any(action.dest == f"{key}.help" for action in actions):  # a class chosen by class path: --model, --data
        classes = _known_classes(key)
        example = CLASS_EXAMPLES.get(key, "CLASS")
        suffix = os.path.commonprefix([name[::-1] for name in classes])[::-1] if len(classes) > 1 else ""
        if detailed and suffix[:1].isupper() and all(name != suffix for name in classes):  # ShapesDataModule, ...
            label = f"{_listed([name[: -len(suffix)] for name in classes])} + {suffix}; --{key}.help {example} lists one's options"
        elif detailed and classes:
            label = f"{_listed(classes)} (in {CLASS_MODULES[key]}); --{key}.help {example} lists one's options"
        elif classes and len(classes) <= 5:
            label = f"{_listed(classes)} (--{key}.help {example})"
        else:
            label = f"a {CLASS_NOUNS.get(key, 'class')} (--{key}.help {example})"
        invocation = [f"--{key} CLASS_PATH"]
    else:
        label = f"{SHARED_LABELS.get(key) or _first_sentence(title)} ({len(options)} options)"
        invocation = [f"--{key}.*"]
    return argparse.Action(option_strings=invocation, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, help=label)


def _readable(action: argparse.Action) -> argparse.Action:
    """The action as --help shows it: a help text past LONG_HELP characters cut to one line (a copy; the parser's stays)."""
    text = action.help
    if not isinstance(text, str) or text == argparse.SUPPRESS or len(text) <= LONG_HELP:
        return action
    short = copy.copy(action)
    short.help = f"{LONG_HELP_SUMMARIES.get(action.dest) or _first_sentence(text)} (--help-all: in full)"
    return short


def short_help_formatter(base: type[argparse.HelpFormatter], prog: str, first: Sequence[str] = ()) -> type[argparse.HelpFormatter]:
    """A ``formatter_class`` for ``--help``: a one-line usage; the groups in ``first`` summarised first
    (fit: model and data); then the command's own groups in full; then every other shared group as one line."""
    program = prog.replace(" [options]", "")

    class ShortHelpFormatter(base):  # type: ignore[valid-type, misc]
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.sections: list[tuple[str | None, str | None, list[argparse.Action]]] = []
            self.open: list[Any] | None = None

        def add_usage(
            self, usage: str | None, actions: Iterable[argparse.Action], groups: Iterable[Any], prefix: str | None = None
        ) -> None:
            commands = any(isinstance(action.choices, dict) for action in actions)  # the main parser: its subcommands
            usage = (
                f"{program} [OPTIONS] COMMAND ..." if commands else f"{program} [OPTIONS] [--config FILE.yaml] [--GROUP.OPTION VALUE ...]"
            )
            super().add_usage(usage, [], [], prefix)

        def start_section(self, heading: str | None) -> None:
            self.open = [heading, None, []]

        def add_text(self, text: str | None) -> None:
            if self.open is None:
                super().add_text(text)  # the description
            else:
                self.open[1] = text

        def add_arguments(self, actions: Iterable[argparse.Action]) -> None:
            if self.open is None:
                super().add_arguments(actions)
            else:
                self.open[2].extend(actions)

        def end_section(self) -> None:
            if self.open is not None:
                self.sections.append((self.open[0], self.open[1], self.open[2]))
            self.open = None

        def _emit(self, heading: str | None, text: str | None, actions: list[argparse.Action]) -> None:
            super().start_section(heading)
            super().add_text(text)
            super().add_arguments(actions)
            super().end_section()

        def format_help(self) -> str:
            own: list[tuple[str | None, str | None, list[argparse.Action]]] = []
            shared: dict[str, tuple[list[argparse.Action], str | None]] = {}
            for heading, text, actions in self.sections:
                key = group_key(actions)
                if key is None:
                    own.append((heading, text, actions))
                else:  # a key's groups merge (``Linked arguments`` holds a model.init_args link)
                    grouped, title = shared.setdefault(key, ([], heading))
                    grouped.extend(actions)
            summaries = {key: _summary_action(key, actions, title, detailed=key in first) for key, (actions, title) in shared.items()}
            leading = [key for key in first if key in summaries]
            if leading:
                self._emit(
                    " and ".join(f"--{key}" for key in leading) + " (the classes to run)", None, [summaries.pop(key) for key in leading]
                )
            for heading, text, actions in own:
                self._emit(heading, text, [_readable(action) for action in actions])
            if summaries:
                self._emit(f"config groups, one line each (`{program} --help-all` lists all their options)", None, list(summaries.values()))
            return super().format_help()

    return ShortHelpFormatter
