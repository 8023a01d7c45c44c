"""Issue 18 defect 7: two writers of one file each rename a complete file of their own (no shared temporary name)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from lightning_gen.checkpoints.files import TEMPORARY_SUFFIX, replace_file
from lightning_gen.synthetic.metadata import atomic_write_text

ROUNDS = 150


def race(write, target: Path, contents: list[str]) -> list[BaseException]:
    """Two threads writing ``target`` ROUNDS times each, at once; the errors they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(contents))

    def writer(text: str) -> None:
        start.wait()
        try:
            for _ in range(ROUNDS):
                write(target, text)
                assert target.read_text() in contents  # a reader never sees a torn or mixed file
        except BaseException as error:  # noqa: BLE001 - reported to the test below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(text,)) for text in contents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.mark.parametrize("write", [replace_file, atomic_write_text], ids=["replace_file", "synthetic.metadata"])
def test_two_concurrent_writers_never_clobber_each_other(tmp_path, write):
    target = tmp_path / "metadata.jsonl"
    contents = ["a" * 200_000 + "\n", "b" * 300_000 + "\n"]  # big enough that writes overlap
    assert race(write, target, contents) == []
    assert target.read_text() in contents
    assert sorted(path.name for path in tmp_path.iterdir()) == ["metadata.jsonl"]  # no temporary left behind


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "x.pt"
    replace_file(target, b"old")

    with pytest.raises(TypeError):
        replace_file(target, 12345)  # type: ignore[arg-type]
    assert target.read_bytes() == b"old" and not list(tmp_path.glob(f"*{TEMPORARY_SUFFIX}"))
