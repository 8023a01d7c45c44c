"""Bad index files: every parser of AwA2, CelebA and NABirds index files loads what it is given or raises a
UserError naming the file and the line — never another exception, a hang or a silently dropped line.

Property-based (hypothesis) over the pure parsers in lightning_gen/data/index_files.py, plus the loaders on
files: a looping NABirds hierarchy, an AwA2 value that is not 0/1, NABirds images without a label.
"""

from __future__ import annotations

import re
import signal
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from fixtures_awa2 import make as make_awa2
from fixtures_awa2 import write_awa2
from fixtures_nabirds import make as make_nabirds
from fixtures_nabirds import write_nabirds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightning_gen.data import index_files as index
from lightning_gen.data.celeba import ATTRIBUTE_NAMES
from lightning_gen.data.nabirds import labelled_images, labels_of_classes
from lightning_gen.errors import UserError

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SOURCE = Path("/datasets/some folder/index.txt")

# What index files are made of, and characters they should never hold (other digits, line breaks
# splitlines() knows but editors do not, a byte-order mark, NUL).
ALPHABET = st.sampled_from(list("0123456789 \t\n\r-+.,_abcXYZ/\\") + ["²", "١", "\x00", "\u2028", "\x85", "\x0c", "é", "\ufeff", "\xa0"])
ANY_TEXT = st.text(ALPHABET, max_size=300)
# A token without whitespace (names, ids, paths): str.split() splits at categories Z and C.
TOKEN = st.text(st.characters(exclude_categories=("Z", "C")), min_size=1, max_size=10)
PADDING = st.sampled_from(["", " ", "   ", "\t"])
SEPARATOR = st.sampled_from([" ", "  ", "\t", " \t "])
LINE_END = st.sampled_from(["\n", "\r\n"])


def lines_of(text: str) -> int:
    return text.count("\n") + 1


def loads_or_names_file_and_line(parse, text: str, *args, **kwargs):
    """The parser's result, or None after checking its UserError: one line, naming the file and an existing line."""
    try:
        return parse(text, SOURCE, *args, **kwargs)
    except UserError as error:
        message = str(error)
        found = re.search(r"\bline (\d+)\b", message)
        assert str(SOURCE) in message and found, message
        assert "\n" not in message and 1 <= int(found.group(1)) <= lines_of(text), message
        return None


@st.composite
def layout(draw, rows: list[list[str]]) -> str:
    """Rows as a file: padded, with varying separators, line ends and blank lines, as real files vary."""
    out = []
    for row in rows:
        if draw(st.booleans()) and draw(st.booleans()):
            out.append(draw(st.sampled_from(["", "   ", "\t"])) + draw(LINE_END))
        out.append(draw(PADDING) + "".join(field + draw(SEPARATOR) for field in row[:-1]) + row[-1] + draw(PADDING) + draw(LINE_END))
    return "".join(out)


# -- AwA2 ---------------------------------------------------------------------------------------------------

FOLDER_NAME = TOKEN.filter(lambda name: name not in (".", "..") and "/" not in name and "\\" not in name)


@FUZZ
@given(names=st.lists(FOLDER_NAME, min_size=1, max_size=8, unique=True), data=st.data())
def test_numbered_names_round_trip(names, data):
    text = data.draw(layout([[str(number), name] for number, name in enumerate(names, 1)]))
    assert index.parse_numbered_names(text, SOURCE) == names


@FUZZ
@given(text=ANY_TEXT)
def test_numbered_names_never_fail_otherwise(text):
    names = loads_or_names_file_and_line(index.parse_numbered_names, text)
    if names is not None:
        assert len(names) == len(index.numbered_lines(text))  # no line dropped


@FUZZ
@given(
    matrix=st.integers(1, 5).flatmap(
        lambda rows: st.lists(st.lists(st.sampled_from("01"), min_size=3, max_size=3), min_size=rows, max_size=rows)
    ),
    data=st.data(),
)
def test_binary_matrix_round_trip(matrix, data):
    text = data.draw(layout(matrix))
    parsed = index.parse_binary_matrix(text, SOURCE, len(matrix), 3)
    np.testing.assert_array_equal(parsed, np.array(matrix, dtype=float))


@FUZZ
@given(
    matrix=st.lists(st.lists(st.sampled_from("01"), min_size=4, max_size=4), min_size=1, max_size=5),
    bad=TOKEN.filter(lambda token: re.fullmatch(r"[01](\.0*)?", token) is None),
    data=st.data(),
)
def test_a_matrix_value_other_than_0_or_1_is_an_error_naming_its_line(matrix, bad, data):
    row = data.draw(st.integers(0, len(matrix) - 1))
    matrix[row][data.draw(st.integers(0, 3))] = bad
    lines = [" ".join(values) for values in matrix]
    with pytest.raises(UserError, match=rf"index\.txt line {row + 1} value \d is .*not 0 or 1"):
        index.parse_binary_matrix("\n".join(lines) + "\n", SOURCE, len(matrix), 4)


@FUZZ
@given(text=ANY_TEXT, rows=st.integers(1, 4), columns=st.integers(1, 4))
def test_binary_matrix_never_fails_otherwise(text, rows, columns):
    matrix = loads_or_names_file_and_line(index.parse_binary_matrix, text, rows, columns)
    if matrix is not None:
        assert matrix.shape == (rows, columns) and set(np.unique(matrix)) <= {0.0, 1.0}


# -- CelebA -------------------------------------------------------------------------------------------------

NAMES = ATTRIBUTE_NAMES[:3]
IMAGE_NAME = TOKEN.filter(lambda name: "," not in name and not index.leaves_its_folder(name) and name not in ("image_id",))
TABLE = st.lists(
    st.tuples(IMAGE_NAME, st.lists(st.sampled_from([1, -1]), min_size=3, max_size=3)), max_size=6, unique_by=lambda row: row[0]
)


@FUZZ
@given(table=TABLE, csv=st.booleans(), data=st.data())
def test_attribute_table_round_trip(table, csv, data):
    if csv:
        text = "image_id," + ",".join(NAMES) + "\n" + "".join(f"{name}," + ",".join(map(str, signs)) + "\n" for name, signs in table)
    else:
        text = data.draw(layout([[str(len(table))], list(NAMES), *([name, *map(str, signs)] for name, signs in table)]))
    parsed = index.parse_attribute_table(text, SOURCE, NAMES, csv=csv)
    assert parsed == [(name, tuple(1.0 if sign == 1 else 0.0 for sign in signs)) for name, signs in table]


@FUZZ
@given(
    body=ANY_TEXT,
    header=st.sampled_from(["", "3\n", "3\n" + " ".join(NAMES) + "\n", "image_id," + ",".join(NAMES) + "\n"]),
    csv=st.booleans(),
)
def test_attribute_table_never_fails_otherwise(body, header, csv):
    text = header + body
    table = loads_or_names_file_and_line(index.parse_attribute_table, text, NAMES, csv=csv)
    if table is not None:
        assert len(table) == len(index.numbered_lines(text)) - (1 if csv else 2)  # every image line kept


@FUZZ
@given(rows=st.lists(st.tuples(IMAGE_NAME, st.sampled_from("012")), max_size=6, unique_by=lambda row: row[0]), data=st.data())
def test_partition_round_trip(rows, data):
    text = data.draw(layout([list(row) for row in rows]))
    assert index.parse_partition(text, SOURCE) == {name: index.CELEBA_PARTITIONS[code] for name, code in rows}


@FUZZ
@given(text=ANY_TEXT, csv=st.booleans())
def test_partition_never_fails_otherwise(text, csv):
    partition = loads_or_names_file_and_line(index.parse_partition, text, csv=csv)
    if partition is not None:
        headers = (
            sum(1 for _, line in index.numbered_lines(text) if [f.strip() for f in line.split(",")] == ["image_id", "partition"])
            if csv
            else 0
        )
        assert len(partition) == len(index.numbered_lines(text)) - headers


# -- NABirds ------------------------------------------------------------------------------------------------

CLASS_NAME = st.lists(TOKEN, min_size=1, max_size=4).map(" ".join)  # names keep their inner spaces
NABIRDS_PARSERS = {
    "classes": index.parse_class_names,
    "images": index.parse_image_paths,
    "labels": index.parse_image_labels,
    "split": index.parse_split,
    "boxes": index.parse_boxes,
    "hierarchy": index.parse_hierarchy,
}


@FUZZ
@given(text=ANY_TEXT, parser=st.sampled_from(sorted(NABIRDS_PARSERS)))
def test_nabirds_parsers_never_fail_otherwise(text, parser):
    table = loads_or_names_file_and_line(NABIRDS_PARSERS[parser], text)
    if table is not None:
        assert len(table) == len(index.numbered_lines(text))  # one entry per line: none dropped, none merged


@FUZZ
@given(classes=st.dictionaries(st.integers(0, 9999).map(str), CLASS_NAME, min_size=1, max_size=6), data=st.data())
def test_class_names_round_trip(classes, data):
    text = data.draw(layout([[class_id, name] for class_id, name in classes.items()]))
    assert index.parse_class_names(text, SOURCE) == classes


@FUZZ
@given(
    images=st.dictionaries(TOKEN, st.tuples(TOKEN, TOKEN).map("/".join).filter(lambda p: not index.leaves_its_folder(p)), max_size=6),
    data=st.data(),
)
def test_image_paths_round_trip(images, data):
    text = data.draw(layout([[image_id, path] for image_id, path in images.items()]))
    parsed = index.parse_image_paths(text, SOURCE)
    assert {image_id: entry.values[0] for image_id, entry in parsed.items()} == images


@pytest.mark.parametrize("path", ["/etc/passwd", "../../secret.jpg", "0446/../../x.jpg", "C:\\x.jpg"])
def test_an_image_path_outside_images_is_an_error(path):
    with pytest.raises(UserError, match="index.txt line 2 .*outside images/"):
        index.parse_image_paths(f"a 0446/a.jpg\nb {path}\n", SOURCE)


@FUZZ
@given(split=st.dictionaries(TOKEN, st.sampled_from("01"), max_size=6), data=st.data())
def test_split_round_trip(split, data):
    text = data.draw(layout([[image_id, code] for image_id, code in split.items()]))
    assert index.parse_split(text, SOURCE) == {image_id: index.NABIRDS_SPLITS[code] for image_id, code in split.items()}


@FUZZ
@given(
    boxes=st.dictionaries(TOKEN, st.tuples(st.integers(0, 999), st.integers(0, 999), st.integers(1, 999), st.integers(1, 999)), max_size=6),
    data=st.data(),
)
def test_boxes_round_trip(boxes, data):
    text = data.draw(layout([[image_id, *map(str, box)] for image_id, box in boxes.items()]))
    assert index.parse_boxes(text, SOURCE) == boxes


def test_a_repeated_key_is_an_error_naming_both_lines():
    with pytest.raises(UserError, match=r"index\.txt line 3 repeats 'a' of line 1"):
        index.parse_image_labels("a 1\nb 2\na 3\n", SOURCE)


@st.composite
def forests(draw) -> dict[str, str]:
    """A class hierarchy without loops: each node's parent is a node made before it."""
    count = draw(st.integers(2, 12))
    nodes = [f"n{number}" for number in range(count)]
    parents = {}
    for position in range(1, count):
        if draw(st.booleans()) or position < 3:
            parents[nodes[position]] = nodes[draw(st.integers(0, position - 1))]
    return parents


@FUZZ
@given(parents=forests(), data=st.data())
def test_hierarchy_round_trip(parents, data):
    text = data.draw(layout([[child, parent] for child, parent in parents.items()]))
    assert index.parse_hierarchy(text, SOURCE) == parents


@FUZZ
@given(parents=forests(), data=st.data())
def test_a_looping_hierarchy_is_an_error(parents, data):
    # Point an ancestor (or the node itself) back at a node of the forest: a loop through that node.
    child = data.draw(st.sampled_from(sorted(parents)))
    ancestors = [child]
    while ancestors[-1] in parents:
        ancestors.append(parents[ancestors[-1]])
    top = ancestors[-1]  # a root: not yet a child, so the new line repeats no key
    looped = {**parents, top: data.draw(st.sampled_from(ancestors))}
    text = "".join(f"{c} {p}\n" for c, p in looped.items())
    with no_hang(5), pytest.raises(UserError, match=r"index\.txt line \d+ closes a loop in the class hierarchy"):
        index.parse_hierarchy(text, SOURCE)


@FUZZ
@given(
    labelled=st.lists(st.sampled_from(["1", "2", "3", None]), max_size=10),
    chosen=st.lists(st.sampled_from(["1", "2", "3"]), min_size=1, max_size=2, unique=True),
)
def test_images_without_a_label_are_returned_for_the_warning_never_dropped(labelled, chosen):
    images = {f"img{n}": index.Entry(n + 1, (f"x/{n}.jpg",)) for n in range(len(labelled))}
    labels = {f"img{n}": index.Entry(n + 1, (class_id,)) for n, class_id in enumerate(labelled) if class_id is not None}
    label_of_class = labels_of_classes(["1", "2", "3"], {}, chosen)
    kept, unlabelled = labelled_images(images, labels, {"1", "2", "3"}, label_of_class, SOURCE)
    assert unlabelled == [f"img{n}" for n, class_id in enumerate(labelled) if class_id is None]
    assert kept == [(f"img{n}", f"x/{n}.jpg", chosen.index(c)) for n, c in enumerate(labelled) if c in chosen]


@FUZZ
@given(data=st.binary(max_size=60))
def test_bytes_that_are_not_utf8_name_their_line(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("bytes") / "classes.txt"
    path.write_bytes(data)
    try:
        text = index.read_index_text(path)
    except UserError as error:
        found = re.search(r"line (\d+) is not UTF-8", str(error))
        assert str(path) in str(error) and found and int(found.group(1)) <= data.count(b"\n") + 1
    else:
        assert text == data.decode("utf-8-sig")


# -- the loaders on files -----------------------------------------------------------------------------------


@contextmanager
def no_hang(seconds: float):
    """A hang (e.g. walking a looping hierarchy) fails the test instead of stalling the suite."""

    def stop(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def edit_line(path: Path, number: int, change) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[number - 1] = change(lines[number - 1])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("value", ["2", "-1", "0.5", "nan"])
def test_awa2_matrix_value_other_than_0_or_1_is_refused(tmp_path, value):
    root = tmp_path / "Animals_with_Attributes2"
    write_awa2(root)
    edit_line(root / "predicate-matrix-binary.txt", 3, lambda line: value + line[1:])
    with pytest.raises(UserError, match=rf"predicate-matrix-binary\.txt line 3 value 1 is '{re.escape(value)}', not 0 or 1"):
        make_awa2(root, tmp_path).samples


def test_nabirds_looping_hierarchy_is_an_error_not_a_hang(tmp_path):
    root = tmp_path / "nabirds"
    write_nabirds(root)
    with (root / "hierarchy.txt").open("a") as file:
        file.write("0 448\n")  # 0 → 448 → 24 → 0, a loop the chosen classes are not on
    with no_hang(30), pytest.raises(UserError, match=r"hierarchy\.txt line 6 closes a loop .*0 → 448 → 24 → 0"):
        make_nabirds(root, tmp_path).samples


def test_nabirds_images_without_a_label_are_counted_in_a_warning(tmp_path):
    root = tmp_path / "nabirds"
    made = write_nabirds(root)
    labels = root / "image_class_labels.txt"
    lines = labels.read_text().splitlines()
    labels.write_text("\n".join(lines[2:]) + "\n")  # two of the Adult Male images lose their label
    with pytest.warns(index.IndexFileWarning, match=rf"2 of {len(made)} images in .*images\.txt have no line in .*image_class_labels\.txt"):
        samples = make_nabirds(root, tmp_path).samples
    assert len(samples) == sum(1 for class_id, _ in made.values() if class_id in (446, 447)) - 2


def test_nabirds_label_of_an_unknown_class_names_its_line(tmp_path):
    root = tmp_path / "nabirds"
    write_nabirds(root)
    edit_line(root / "image_class_labels.txt", 4, lambda line: line.split()[0] + " 9999")
    with pytest.raises(UserError, match=r"image_class_labels\.txt line 4 gives image \S+ the class 9999, which classes\.txt does not list"):
        make_nabirds(root, tmp_path).samples
