"""The import layers and the protocol rule, checked on the source (docs/architecture.md, DESIGN.md "the protocol is the only door").

(a) commands/ are leaves: nothing outside lightning_gen/commands/ and lightning_gen/cli.py imports them;
(b) nothing outside models/ probes a model: no hasattr(model, ...)/getattr(model, ...)/getattr(self.model, ...)
    and no inspect.signature(...);
(c) models/ and data/ meet only in the batch dict and DataFacts: neither imports the other;
(d) test modules never import each other: what tests share lives in tests/fixtures_*.py (or conftest.py).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lightning_gen"
TESTS = Path(__file__).resolve().parent


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def relative(path: Path, root: Path = PACKAGE) -> str:
    return path.relative_to(root.parent).as_posix()


def imported_modules(path: Path, root: Path = PACKAGE) -> set[str]:
    """Every module ``path`` imports, absolute (``from .x import y`` resolved against the file's package), lazy imports included."""
    package = relative(path, root)[: -len(".py")].replace("/", ".").rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # ``from lightning_gen import commands``
    return found


def in_package(path: Path, package: str) -> bool:
    return relative(path).startswith(f"lightning_gen/{package}/")


def imports_package(path: Path, package: str) -> bool:
    name = f"lightning_gen.{package}"
    return any(module == name or module.startswith(f"{name}.") for module in imported_modules(path))


def importers_of(package: str, allowed: tuple[str, ...]) -> list[str]:
    return [
        relative(path)
        for path in modules()
        if not any(relative(path) == entry or relative(path).startswith(entry) for entry in allowed) and imports_package(path, package)
    ]


def test_imported_modules_sees_absolute_relative_and_lazy_imports(tmp_path):
    source = tmp_path / "lightning_gen" / "metrics" / "x.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "def f():\n    from ..commands import sample\n    import lightning_gen.commands.mix\nfrom lightning_gen import commands\n"
    )
    found = imported_modules(source, tmp_path / "lightning_gen")
    assert {"lightning_gen.commands", "lightning_gen.commands.sample", "lightning_gen.commands.mix"} <= found


def test_commands_are_leaves():
    """(a) Code two commands share lives in the library (inference/, runs/, latent/, ...), never in commands/."""
    assert importers_of("commands", ("lightning_gen/commands/", "lightning_gen/cli.py")) == []


# A probe of a model: hasattr/getattr on a model object, or inspect.signature of anything (in practice model.sample).
PROBE = re.compile(r"\b(?:hasattr|getattr)\(\s*(?:self\.)?model\b|\binspect\.signature\(")

# Files outside models/ that may still match PROBE, each with why. Empty: every caller asks lightning_gen.protocol.
PROBE_ALLOWED: dict[str, str] = {}


def probes() -> list[str]:
    found = []
    for path in modules():
        if in_package(path, "models") or relative(path) in PROBE_ALLOWED:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if PROBE.search(line):
                found.append(f"{relative(path)}:{number}: {line.strip()}")
    return found


@pytest.mark.parametrize(
    ("line", "is_probe"),
    [
        ('if hasattr(model, "sampling_steps"):', True),
        ('getattr(self.model, "vocabulary", None)', True),
        ("getattr( model, 'body')", True),
        ("inspect.signature(model.sample).parameters", True),
        ('getattr(module, "DESCRIPTION", None)', False),
        ('getattr(datamodule, "test_set", None)', False),
        ("model.sampling_options().accepts('steps')", False),
    ],
)
def test_the_probe_pattern(line, is_probe):
    assert bool(PROBE.search(line)) is is_probe


def test_nothing_outside_models_probes_a_model():
    """(b) Callers ask the protocol (isinstance on its runtime-checkable protocols, or methods every model has).

    At the time of writing, metrics/extractors.py, metrics/judged.py, metrics/comparison.py and callbacks/* are
    being moved to the protocol in a parallel change (the "models" branch); this test scans them too, on purpose.
    """
    assert probes() == []


def test_models_and_data_do_not_import_each_other():
    """(c) They meet only in the batch dict and DataFacts (lightning_gen/facts.py)."""
    models_to_data = [relative(path) for path in modules() if in_package(path, "models") and imports_package(path, "data")]
    data_to_models = [relative(path) for path in modules() if in_package(path, "data") and imports_package(path, "models")]
    assert (models_to_data, data_to_models) == ([], [])


def imported_test_module(name: str) -> str | None:
    """The test module an import of ``name`` loads: ``test_x`` (tests/ is on sys.path) or ``tests.test_x``; else None."""
    parts = name.split(".")
    if parts[0] == "tests" and len(parts) > 1:
        parts = parts[1:]
    return parts[0] if parts[0].startswith("test_") else None


def imports_between_tests(tests: Path = TESTS) -> list[str]:
    """``tests/test_a.py imports test_b`` for every test module of ``tests`` that imports another, lazy imports included."""
    found = set()
    for path in sorted(tests.glob("test_*.py")):
        for name in imported_modules(path, tests):
            other = imported_test_module(name)
            if other is not None and other != path.stem:
                found.add(f"{relative(path, tests)} imports {other}")
    return sorted(found)


def test_the_test_import_scan_sees_plain_from_lazy_and_package_imports(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_a.py").write_text("from conftest import run_cli\nfrom fixtures_latent import write_tiny_autoencoder\nimport unittest\n")
    (tests / "test_b.py").write_text("import test_a\n")
    (tests / "test_c.py").write_text("def f():\n    from test_a import x\n")
    (tests / "test_d.py").write_text("from tests.test_a import x\nfrom tests import test_b\n")
    (tests / "test_e.py").write_text("from .test_c import f\n")
    assert imports_between_tests(tests) == [
        "tests/test_b.py imports test_a",
        "tests/test_c.py imports test_a",
        "tests/test_d.py imports test_a",
        "tests/test_d.py imports test_b",
        "tests/test_e.py imports test_c",
    ]


def test_no_test_module_imports_another():
    """(d) A test module is no library: what two test modules share lives in tests/fixtures_*.py, imported by both."""
    assert imports_between_tests() == []
