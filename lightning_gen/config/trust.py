"""What lightning_gen builds from a config it was handed: one allow-list, one check, used by every reader.

A run directory or a checkpoint can come from someone else (a shared folder, a download, a colleague's
run). Its ``config.yaml``, a ``config.yaml`` beside a checkpoint, and a checkpoint's (or a weight
snapshot's) ``hyper_parameters`` are therefore data, never code: before anything is built from one,
``check_config`` walks the whole mapping and refuses every class it names outside the allow-list.

The allow-list (``ALLOWED_PACKAGES``): classes *defined* in

- ``lightning_gen`` (models, datamodules, callbacks, schedules, ...);
- ``torch.optim`` (optimizers, and ``torch.optim.lr_scheduler``);
- ``lightning.pytorch.loggers``, ``.callbacks``, ``.strategies``, ``.plugins``, ``.profilers``,
  ``.accelerators`` and ``lightning.fabric.plugins`` (where Lightning defines its plugin classes).

Only classes: a function or a module under an allowed name (``lightning_gen.commands.sweep.fit_in_subprocess``,
``lightning_gen.commands.sweep.subprocess``) is refused, and so is a class re-exported under an allowed
name but defined elsewhere. A name is imported only after its text passed the allow-list, so a refused
name is never imported (importing runs the module's code).

What is checked, recursively through every mapping and list:

- every ``class_path`` (also ``_class_path``, a dotted ``data.class_path`` key and ``--data.class_path``);
  a short name jsonargparse resolves (``Adam``, ``VAE``) must name a class of an allowed module
  (jsonargparse resolves it among the already imported subclasses of the parameter's type and refuses an
  ambiguous one, so it then is that class);
- in a config (not in a checkpoint's hyperparameters, which never pass through jsonargparse), every
  other string that looks like an import path (``os.system``) whose top-level module exists:
  jsonargparse imports such a string where a class or a callable may stand (``data: os.system``,
  a callback's ``on_fit_start: os.system``); it must be an allowed class;
- a string holding a YAML/JSON mapping or list (jsonargparse parses ``'{"class_path": ...}'``) and a string
  naming an existing ``.yaml``/``.yml``/``.json`` file (jsonargparse reads such nested config files):
  checked as configs themselves;
- a ``feature_extractor`` must be ``inception``, a ``.ckpt`` (read weights only) or an allowed class:
  a TorchScript or ``torch.export`` file can carry code.

Which configs are checked (every reader calls ``check_config`` through ``trusted_config``):

- a run's ``config.yaml`` read by ``edit``, ``app`` (at start-up), ``evaluate``, ``compare`` (and the
  ``--group`` search), and a ``config.yaml`` in the folder of a checkpoint outside ``checkpoints/``;
- a checkpoint's and a weight snapshot's ``hyper_parameters`` (``lightning_gen.checkpoints.load_model``);
- a ``--config`` (or any option's ``.yaml``/``.json`` file) that lies in a run directory, for every
  command including ``fit``/``validate``/``test``/``predict`` and ``sweep`` (``check_config_arguments``,
  called by ``lightning_gen.cli.main`` before anything is parsed). A config file elsewhere is the user's
  own choice and may name the user's own classes. A file lies in a run directory when its folder is
  ``checkpoints/``, holds ``checkpoints/``, ``hparams.yaml``, a ``.ckpt`` or ``.safetensors`` file, is
  named ``version_N``, or lies under the runs root (``runs/`` or ``--trainer.default_root_dir``).

``hparams.yaml`` files (written by Lightning's CSV/TensorBoard loggers) are never read by lightning_gen,
and nothing calls Lightning's ``load_from_checkpoint``/``load_hparams_from_yaml``; every ``torch.load`` is
``weights_only=True`` (tests/test_safe_loading.py guards both).

YAML is read with the safe loader: a ``!!python/...`` tag never builds an object, and the error is one
sentence naming the file, the line and the tag (``read_config``).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from lightning_gen.errors import UserError

ALLOWED_PACKAGES = (
    "lightning_gen",
    "torch.optim",
    "lightning.pytorch.loggers",
    "lightning.pytorch.callbacks",
    "lightning.pytorch.strategies",
    "lightning.pytorch.plugins",
    "lightning.pytorch.profilers",
    "lightning.pytorch.accelerators",
    "lightning.fabric.plugins",
)
# Where a short class name (``Adam``, ``VAE``, ``ModelCheckpoint``) is looked up.
SHORT_NAME_MODULES = (
    "lightning_gen.models",
    "lightning_gen.models.schedules",
    "lightning_gen.data",
    "lightning_gen.callbacks",
    "torch.optim",
    "torch.optim.lr_scheduler",
    *(package for package in ALLOWED_PACKAGES if package.startswith("lightning.pytorch.")),
)
ALLOWED_IN_WORDS = (
    "classes of lightning_gen, torch.optim and Lightning's loggers, callbacks, strategies, plugins, profilers and accelerators"
)
CLASS_PATH_KEYS = ("class_path", "_class_path")
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
RUN_FIX = "remove it, or if you wrote that file yourself and trust it, copy it out of the run directory and pass the copy with --config"
CHECKPOINT_FIX = "pass a checkpoint written by lightning_gen"
_IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
_SHORT_NAME = re.compile(r"[A-Za-z_]\w*")
_MAX_NESTING = 8


class UntrustedConfig(UserError):
    """A config that came with a run or a checkpoint names something lightning_gen does not build from one."""


# -- the allow-list ------------------------------------------------------------------------------------
def _under_allowed(name: str) -> bool:
    return any(name == package or name.startswith(package + ".") for package in ALLOWED_PACKAGES)


def _import_attribute(path: str) -> Any:
    """``module.attribute`` (or ``module.Class.Nested``) as jsonargparse imports it; only called on allowed names."""
    module_name, _, attribute = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except ModuleNotFoundError:
        if "." not in module_name:
            raise
        parent, _, middle = module_name.rpartition(".")
        return getattr(getattr(importlib.import_module(parent), middle), attribute)


def allowed_class(name: str) -> bool:
    """Whether ``name`` (a full import path or a short class name) is a class lightning_gen builds from a handed config."""
    if _SHORT_NAME.fullmatch(name):
        return any(_short_name_in(module, name) for module in SHORT_NAME_MODULES)
    if not _IMPORT_PATH.fullmatch(name) or not _under_allowed(name):
        return False  # never imported
    try:
        found = _import_attribute(name)
    except Exception:  # ImportError, AttributeError, an optional dependency missing, ...
        return False
    return inspect.isclass(found) and _under_allowed(getattr(found, "__module__", "") or "")


def _short_name_in(module_name: str, name: str) -> bool:
    try:
        found = getattr(importlib.import_module(module_name), name, None)
    except Exception:
        return False
    return inspect.isclass(found) and _under_allowed(getattr(found, "__module__", "") or "")


def _names_a_module(text: str) -> bool:
    """An import path whose top-level module exists (found without importing anything)."""
    try:
        return importlib.util.find_spec(text.split(".", 1)[0]) is not None
    except (ImportError, ValueError):
        return False


# -- the check ---------------------------------------------------------------------------------------
def _is_class_path_key(key: Any) -> bool:
    return isinstance(key, str) and key.lstrip("-").rsplit(".", 1)[-1] in CLASS_PATH_KEYS


def _nested_file(text: str, folders: Sequence[Path]) -> Path | None:
    if not text.endswith(CONFIG_SUFFIXES) or "\n" in text or len(text) > 4096:
        return None
    for folder in folders:
        candidate = (folder / text).expanduser()
        try:
            if candidate.is_file():
                return candidate
        except OSError:
            return None
    return None


def check_config(config: Any, source: str | Path, fix: str = RUN_FIX, where: str = "", strings: bool = True, _depth: int = 0) -> None:
    """Refuses (one-sentence UntrustedConfig) anything in ``config`` outside the allow-list; see the module docstring.

    ``config`` is the mapping read from ``source`` (a file, or e.g. ``checkpoint X``, named in the error);
    ``fix`` ends the sentence and ``where`` prefixes the key paths it names (``hyper_parameters``).
    ``strings=False`` leaves plain strings alone (only ``class_path`` entries count): for a checkpoint's
    hyperparameters, which go to the model class as they are, never through jsonargparse, and whose data
    facts hold class names such as ``site.com``. Returns None when everything ``config`` names may be built.
    """
    source_path = Path(str(source))
    folders = [source_path.parent, Path.cwd()] if source_path.is_file() else [Path.cwd()]
    stack: list[tuple[Any, str]] = [(config, where)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                inner = f"{where}.{key}" if where else str(key)
                if _is_class_path_key(key):
                    if not isinstance(item, str) or not allowed_class(item.strip()):
                        _refuse(source, inner, item, fix)
                    continue
                if key == "feature_extractor" and isinstance(item, str) and not _plain_extractor(item):
                    raise UntrustedConfig(
                        f"{source} sets {inner} to {item}, a TorchScript/torch.export file or class "
                        f"lightning_gen does not load from a config "
                        f"that came with a run or checkpoint (such files can carry code; inception, a Judge "
                        f".ckpt or one of the {ALLOWED_IN_WORDS} are loaded); {fix}."
                    )
                stack.append((item, inner))
        elif isinstance(value, (list, tuple)):
            stack.extend((item, f"{where}[{index}]") for index, item in enumerate(value))
        elif isinstance(value, str) and strings:
            _check_string(value, where, source, fix, folders, _depth)


def _plain_extractor(spec: str) -> bool:
    spec = spec.strip()
    return spec == "inception" or spec.endswith(".ckpt") or allowed_class(spec)


def _check_string(text: str, where: str, source: str | Path, fix: str, folders: Sequence[Path], depth: int) -> None:
    stripped = text.strip()
    if stripped[:1] in ("{", "[") and depth < _MAX_NESTING:
        try:
            parsed = yaml.safe_load(stripped)
        except yaml.YAMLError:
            parsed = None
        if isinstance(parsed, (dict, list)):
            check_config(parsed, source, fix, where, _depth=depth + 1)
        return
    nested = _nested_file(stripped, folders)
    if nested is not None:
        if depth < _MAX_NESTING:
            check_config(_read(nested), nested, fix, _depth=depth + 1)
        return
    if _IMPORT_PATH.fullmatch(stripped) and _names_a_module(stripped) and not allowed_class(stripped):
        _refuse(source, where, stripped, fix)


def _refuse(source: str | Path, where: str, name: Any, fix: str) -> None:
    raise UntrustedConfig(
        f"{source} names {name!s} at {where or 'its top level'}, which lightning_gen does not build from a "
        f"config that came with a run or checkpoint "
        f"(only {ALLOWED_IN_WORDS}); {fix}."
    )


# -- reading -----------------------------------------------------------------------------------------
def _tag_error(path: str | Path, error: yaml.constructor.ConstructorError) -> UserError:
    found = re.search(r"tag '([^']+)'", str(error.problem or ""))
    tag = found.group(1).replace("tag:yaml.org,2002:", "!!") if found else "a tag"
    line = f" line {error.problem_mark.line + 1}" if error.problem_mark is not None else ""
    kind = "python tags" if "python/" in tag else "tags it cannot read"
    return UserError(
        f"{path}{line} holds the YAML tag {tag}, and lightning_gen refuses {kind} in a config (they would build Python objects); "
        f"write plain values there (a class as class_path and init_args)."
    )


def _parse(text: str, path: str | Path) -> Any:
    """Safe-loaded YAML (JSON is YAML); a python tag is a one-sentence UserError, other YAML errors propagate."""
    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.constructor.ConstructorError as error:
        raise _tag_error(path, error) from None


def _read(path: Path) -> Any:
    try:
        return _parse(path.read_text(), path)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = str(getattr(error, "problem", None) or type(error).__name__)
        raise UserError(f"{path} is not valid YAML{line} ({problem}); fix the file.") from None


def read_config(path: str | Path) -> dict[str, Any]:
    """A YAML/JSON config read as data (the safe loader): a mapping, ``{}`` for an empty file."""
    content = _read(Path(path))
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise UserError(f"{path} holds a {type(content).__name__}, not a config mapping; pass a YAML config file.")
    return content


def trusted_config(path: str | Path, fix: str = RUN_FIX) -> dict[str, Any]:
    """The config of a run or beside a checkpoint: read as data and checked (``check_config``) before anything is built."""
    config = read_config(path)
    check_config(config, path, fix)
    return config


# -- config files on the command line ----------------------------------------------------------------
def lies_in_run_directory(path: str | Path, roots: Iterable[str | Path] = ("runs",)) -> bool:
    """Whether a config file came with a run (see the module docstring), rather than being the user's own."""
    resolved = Path(path).resolve()
    folder = resolved.parent
    if folder.name == "checkpoints" or re.fullmatch(r"version_\d+", folder.name):
        return True
    if (folder / "checkpoints").is_dir() or (folder / "hparams.yaml").is_file():
        return True
    if any(folder.glob("*.ckpt")) or any(folder.glob("*.safetensors")):
        return True
    for root in roots:
        root_path = Path(root).resolve()
        if root_path.is_dir() and root_path in resolved.parents:
            return True
    return False


def _option_values(argv: Sequence[str]) -> list[tuple[str | None, str]]:
    """(option, value) for every value on the command line; a positional has option None."""
    found: list[tuple[str | None, str]] = []
    previous: str | None = None
    for token in argv:
        if token.startswith("-") and "=" in token:
            option, _, value = token.partition("=")
            found.append((option, value))
            previous = None
        elif token.startswith("-") and not _looks_numeric(token):
            previous = token
        else:
            found.append((previous, token))
            previous = None
    return found


def _looks_numeric(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def check_config_arguments(argv: Sequence[str]) -> None:
    """Before a command parses ``argv``: each ``--config`` file is read safely (a python tag is one sentence),
    and each config file on the command line that lies in a run directory is checked (``check_config``)."""
    values = _option_values(argv)
    roots = ["runs", *(value for option, value in values if option == "--trainer.default_root_dir")]
    for option, value in values:
        is_config_option = option in ("--config", "-c")
        if not (is_config_option or value.endswith(CONFIG_SUFFIXES)):
            continue
        path = Path(value).expanduser()
        try:
            if not path.is_file():
                continue  # a YAML string given inline, or a missing file jsonargparse reports
        except OSError:
            continue
        try:
            content = _parse(path.read_text(), path)
        except (yaml.YAMLError, OSError, UnicodeDecodeError):
            continue  # jsonargparse reports a malformed or unreadable file; nothing is built from it
        if lies_in_run_directory(path, roots):
            check_config(content, path)


def plain_data(value: Any) -> Any:
    """``value`` as plain data (dicts with string keys, lists, numbers, strings): what a weights_only checkpoint and
    a JSON config can hold; tuples become lists (models accept either)."""
    if isinstance(value, dict):
        return {str(key): plain_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(item) for item in value]
    return value
