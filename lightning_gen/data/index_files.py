"""Parsers of the datasets' index files (AwA2, CelebA, NABirds): pure functions of a file's text.

Each returns everything it read or raises a UserError naming the file and the line; blank lines are
the only lines passed over. Being pure and fast, they are fuzzed with hypothesis (tests/test_index_fuzz.py).
Lines end at ``\\n`` (``\\r\\n`` too), as an editor numbers them, not at the other breaks ``splitlines`` knows.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np

from lightning_gen.errors import UserError

FIX = "re-download the dataset"
# ASCII digits only (str.isdigit() accepts '²', which int() rejects), and few enough for int() to take.
_INTEGER = re.compile(r"[0-9]{1,18}")
_BINARY = re.compile(r"[01](\.0*)?")
_NUMBER = re.compile(r"[0-9]{1,9}(\.[0-9]*)?")


class Entry(NamedTuple):
    line: int
    values: tuple[str, ...]


class IndexFileWarning(UserWarning):
    """An index file leaves some entries out (e.g. NABirds images without a class label); they are counted, never dropped silently."""


def read_index_text(path: str | Path) -> str:
    """The file's text; a byte sequence that is not UTF-8 is a UserError naming its line."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise UserError(f"{path} line {line} is not UTF-8 text; {FIX}.") from None


def numbered_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line number, line) of every line that is not blank."""
    return [(number, line) for number, line in enumerate(text.split("\n"), 1) if line.strip()]


def shown(line: str, limit: int = 60) -> str:
    text = line.strip()
    return repr(text if len(text) <= limit else text[:limit] + "…")


def leaves_its_folder(relative: str) -> bool:
    """Whether a path an index file gives relative to the image folder points outside it."""
    path = PurePosixPath(relative.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts or bool(re.match(r"[A-Za-z]:", relative))


def _no_lines(source: str | Path, what: str) -> UserError:
    return UserError(f"{source} line 1: the file holds no {what} lines; {FIX}.")


# -- AwA2 ---------------------------------------------------------------------------------------------------


def parse_numbered_names(text: str, source: str | Path) -> list[str]:
    """``<1-based id> <name>`` lines (classes.txt, predicates.txt; left padding and tabs allowed), names in id order."""
    names: list[str] = []
    line_of: dict[str, int] = {}
    for number, line in numbered_lines(text):
        fields = line.split()
        expected = len(names) + 1
        if len(fields) != 2 or not _INTEGER.fullmatch(fields[0]) or int(fields[0]) != expected:
            raise UserError(f"{source} line {number} should be '<id {expected}> <name>', got {shown(line)}; {FIX}.")
        if fields[1] in (".", "..") or "/" in fields[1] or "\\" in fields[1]:  # class names are folder names
            raise UserError(f"{source} line {number} has the name {shown(fields[1])}, which cannot be a folder name; {FIX}.")
        if fields[1] in line_of:
            raise UserError(f"{source} line {number} repeats the name '{fields[1]}' of line {line_of[fields[1]]}; {FIX}.")
        line_of[fields[1]] = number
        names.append(fields[1])
    if not names:
        raise _no_lines(source, "'<id> <name>'")
    return names


def parse_binary_matrix(text: str, source: str | Path, rows: int, columns: int) -> np.ndarray:
    """The 0/1 class × attribute matrix (predicate-matrix-binary.txt), ``rows`` × ``columns`` as classes.txt × predicates.txt."""
    lines = numbered_lines(text)
    if len(lines) != rows:
        where = (
            f"line {lines[rows][0]} is row {rows + 1}"
            if len(lines) > rows
            else f"its last row is line {lines[-1][0]}"
            if lines
            else "line 1: it is empty"
        )
        raise UserError(
            f"{source} is {len(lines)}×{columns} but classes.txt and predicates.txt list "
            f"{rows} classes × {columns} attributes ({where}); {FIX}."
        )
    matrix = np.zeros((rows, columns), dtype=np.float32)
    for row, (number, line) in enumerate(lines):
        fields = line.split()
        if len(fields) != columns:
            raise UserError(f"{source} line {number} holds {len(fields)} values but predicates.txt lists {columns} attributes; {FIX}.")
        for column, field in enumerate(fields):
            if not _BINARY.fullmatch(field):
                raise UserError(f"{source} line {number} value {column + 1} is {shown(field)}, not 0 or 1; {FIX}.")
            matrix[row, column] = float(field)
    return matrix


# -- CelebA -------------------------------------------------------------------------------------------------


def _fields(line: str, csv: bool) -> list[str]:
    """Space-separated (.txt) or comma-separated (Kaggle's .csv) fields."""
    return [field.strip() for field in line.split(",")] if csv else line.split()


def parse_attribute_table(
    text: str, source: str | Path, attribute_names: tuple[str, ...], csv: bool = False
) -> list[tuple[str, tuple[float, ...]]]:
    """list_attr_celeba: (file name, attributes as 0.0/1.0) per image in file order; values are 1 and -1 (or 0)."""
    rows = numbered_lines(text)
    declared_count = None
    if not csv:  # the official .txt starts with a line holding the image count
        if not rows:
            raise _no_lines(source, "image count and attribute")
        number, line = rows[0]
        fields = line.split()
        if len(fields) != 1 or not _INTEGER.fullmatch(fields[0]):
            raise UserError(f"{source} line {number} should hold the image count, got {shown(line)}; {FIX}.")
        declared_count = int(fields[0])
        rows = rows[1:]
    if not rows:
        if declared_count is None:
            raise _no_lines(source, "attribute name")
        raise UserError(f"{source} line {number} holds the image count but no line of attribute names follows; {FIX}.")
    number, header = rows[0]
    names = tuple(field for field in _fields(header, csv) if field and field != "image_id")
    if names != attribute_names:
        raise UserError(f"{source} line {number} does not list the {len(attribute_names)} CelebA attribute names; {FIX}.")
    table = []
    line_of: dict[str, int] = {}
    for number, line in rows[1:]:
        fields = _fields(line, csv)
        name, values = fields[0], fields[1:]
        if not name or len(values) != len(attribute_names) or not set(values) <= {"1", "-1", "0"}:
            raise UserError(
                f"{source} line {number} should be a file name and {len(attribute_names)} values of 1 or -1, got {shown(line)}; {FIX}."
            )
        if leaves_its_folder(name):
            raise UserError(f"{source} line {number} names the image {shown(name)}, outside the image folder; {FIX}.")
        if name in line_of:
            raise UserError(f"{source} line {number} repeats the image {name} of line {line_of[name]}; {FIX}.")
        line_of[name] = number
        table.append((name, tuple(1.0 if value == "1" else 0.0 for value in values)))
    if declared_count is not None and declared_count != len(table):
        raise UserError(f"{source} line 1 declares {declared_count} images but the file lists {len(table)}; {FIX}.")
    return table


CELEBA_PARTITIONS = {"0": "train", "1": "val", "2": "test"}


def parse_partition(text: str, source: str | Path, csv: bool = False) -> dict[str, str]:
    """list_eval_partition: file name → "train" / "val" / "test" from ``<file> <0|1|2>`` lines."""
    partition: dict[str, str] = {}
    line_of: dict[str, int] = {}
    for number, line in numbered_lines(text):
        fields = _fields(line, csv)
        if fields == ["image_id", "partition"]:
            continue
        if len(fields) != 2 or not fields[0] or fields[1] not in CELEBA_PARTITIONS:
            raise UserError(f"{source} line {number} should be '<file> <0, 1 or 2>', got {shown(line)}; {FIX}.")
        if fields[0] in line_of:
            raise UserError(f"{source} line {number} repeats the image {fields[0]} of line {line_of[fields[0]]}; {FIX}.")
        line_of[fields[0]] = number
        partition[fields[0]] = CELEBA_PARTITIONS[fields[1]]
    return partition


# -- NABirds ------------------------------------------------------------------------------------------------


def parse_keyed_lines(text: str, source: str | Path, value_fields: int = 1, what: str = "<key> <value>") -> dict[str, Entry]:
    """``<key> <value …>`` lines as key → Entry(line, values); with one value field it keeps its inner spaces."""
    table: dict[str, Entry] = {}
    for number, line in numbered_lines(text):
        fields = line.split(None, 1) if value_fields == 1 else line.split()
        if len(fields) != value_fields + 1:
            raise UserError(f"{source} line {number} should be '{what}', got {shown(line)}; {FIX}.")
        key, values = fields[0], tuple(field.strip() for field in fields[1:])
        if key in table:
            raise UserError(f"{source} line {number} repeats '{key}' of line {table[key].line}; {FIX}.")
        table[key] = Entry(number, values)
    return table


def parse_class_names(text: str, source: str | Path) -> dict[str, str]:
    """classes.txt: class id → name (with spaces)."""
    names = {class_id: entry.values[0] for class_id, entry in parse_keyed_lines(text, source, what="<class id> <name>").items()}
    if not names:
        raise _no_lines(source, "'<class id> <name>'")
    return names


def parse_image_paths(text: str, source: str | Path) -> dict[str, Entry]:
    """images.txt: image id → Entry(line, (path relative to images/,)); a path leaving images/ is an error."""
    images = parse_keyed_lines(text, source, what="<image id> <relative path>")
    for image_id, entry in images.items():
        if leaves_its_folder(entry.values[0]):
            raise UserError(f"{source} line {entry.line} gives image {image_id} the path {shown(entry.values[0])}, outside images/; {FIX}.")
    return images


def parse_image_labels(text: str, source: str | Path) -> dict[str, Entry]:
    """image_class_labels.txt: image id → Entry(line, (class id,))."""
    return parse_keyed_lines(text, source, what="<image id> <class id>")


NABIRDS_SPLITS = {"1": "train", "0": "test"}


def parse_split(text: str, source: str | Path) -> dict[str, str]:
    """train_test_split.txt: image id → "train" (1) or "test" (0)."""
    split = {}
    for image_id, entry in parse_keyed_lines(text, source, what="<image id> <1 train or 0 test>").items():
        if entry.values[0] not in NABIRDS_SPLITS:
            raise UserError(
                f"{source} line {entry.line} should be '<image id> <1 train or 0 test>', got "
                f"{shown(entry.values[0])} for {image_id}; {FIX}."
            )
        split[image_id] = NABIRDS_SPLITS[entry.values[0]]
    return split


def parse_boxes(text: str, source: str | Path) -> dict[str, tuple[int, int, int, int]]:
    """bounding_boxes.txt: image id → (x, y, width, height) in pixels, width and height at least 1."""
    boxes = {}
    for image_id, entry in parse_keyed_lines(text, source, value_fields=4, what="<image id> <x> <y> <width> <height>").items():
        if not all(_NUMBER.fullmatch(value) for value in entry.values):
            raise UserError(
                f"{source} line {entry.line} should give image {image_id} four non-negative pixel numbers, got "
                f"{shown(' '.join(entry.values))}; {FIX}."
            )
        x, y, width, height = (int(value.split(".")[0]) for value in entry.values)
        if width < 1 or height < 1:
            raise UserError(f"{source} line {entry.line} gives image {image_id} an empty box ({width}×{height} pixels); {FIX}.")
        boxes[image_id] = (x, y, width, height)
    return boxes


def parse_hierarchy(text: str, source: str | Path) -> dict[str, str]:
    """hierarchy.txt: child class id → parent class id; a child with two parents or a loop is an error."""
    entries = parse_keyed_lines(text, source, what="<child id> <parent id>")
    parents = {child: entry.values[0] for child, entry in entries.items()}
    done: set[str] = set()
    for start in parents:
        path: list[str] = []
        on_path: set[str] = set()
        node: str | None = start
        while node is not None and node not in done:
            if node in on_path:
                cycle = path[path.index(node) :]
                # Named from the line read last, the one that closes the loop as the file is read.
                closing = max(range(len(cycle)), key=lambda position: entries[cycle[position]].line)
                loop = cycle[closing:] + cycle[:closing] + [cycle[closing]]
                shown_loop = " → ".join(loop if len(loop) <= 6 else [*loop[:3], "…", *loop[-2:]])
                raise UserError(f"{source} line {entries[cycle[closing]].line} closes a loop in the class hierarchy ({shown_loop}); {FIX}.")
            path.append(node)
            on_path.add(node)
            node = parents.get(node)
        done.update(path)
    return parents
