"""The package's shape: folders import only from the folders below them, no import cycles, short functions,
and every `va2att.` name the documentation mentions exists."""

import ast
import importlib
import re
from pathlib import Path

import package_shape  # benchmarks/package_shape.py: the import graph and the layers, measured the same way
import pytest

import va2att

PACKAGE = Path(va2att.__file__).resolve().parent
REPO = PACKAGE.parent
LEVELS = package_shape.LEVELS  # bottom to top: a module may import from its own level or the levels below
# The documented module commands kept at their old paths: each hands over to va2att.cli (the top).
SHIMS = {f"va2att.{name}" for name in package_shape.COMMANDS}
FACADE = "va2att"  # va2att/__init__.py: the public names, imported on first use
MAX_FUNCTION_LINES = 80


def modules() -> dict[str, Path]:
    return package_shape.modules(PACKAGE)


def graph() -> dict[str, set[str]]:
    return package_shape.arrows(modules())


def level(module: str) -> int:
    parts = module.split(".")
    return LEVELS[parts[1]] if len(parts) > 1 else -1


def test_every_module_sits_in_a_known_folder():
    assert sorted({m.split(".")[1] for m in modules() if m != FACADE and m not in SHIMS} - set(LEVELS)) == []


def test_no_folder_imports_from_a_folder_above_it():
    upward = sorted(f"{source} -> {target}" for source, targets in graph().items()
                    if source not in SHIMS and source != FACADE
                    for target in targets if level(target) > level(source))
    assert upward == []


def test_no_import_cycles():
    edges = {m: {t for t in ts if t not in SHIMS} for m, ts in graph().items() if m not in SHIMS}
    assert package_shape.cycles(edges) == []


def test_no_function_is_longer_than_the_limit():
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert long == []


DOCS = [REPO / "README.md", REPO / "BENCHMARKS.md", *sorted((REPO / "docs").glob("*.md"))]
FILE_NAMES = {"va2att.json"}  # files named like the package: assets.extra/va2att.json
NAME = re.compile(r"`[^`\n]*?\b(va2att(?:\.[A-Za-z_][A-Za-z_0-9]*)+)")


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attribute in parts[cut:]:
                obj = getattr(obj, attribute)
        except AttributeError:
            return False
        return True
    return False


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_va2att_name_the_documentation_mentions_exists(doc):
    names = sorted({m.group(1) for m in NAME.finditer(doc.read_text())} - FILE_NAMES)
    missing = [name for name in names if not resolves(name)]
    assert missing == []


PATH = re.compile(r"(?<![\w/.])(va2att/[A-Za-z_0-9/]*(?:\.py|/))")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_package_path_the_documentation_mentions_exists(doc):
    missing = sorted({m.group(1) for m in PATH.finditer(doc.read_text())} - {"va2att/"})
    assert [path for path in missing if not (REPO / path).exists()] == []


def test_every_test_the_reliability_promises_name_exists():
    """docs/reliability.md names a test for each promise: `tests/FILE.py::name`, or `::name` of the file named
    last before it."""
    current, missing = None, []
    for token in re.findall(r"`(tests/[\w/]+\.py)?(?:::(\w+))?[^`]*`", (REPO / "docs" / "reliability.md").read_text()):
        path, name = token
        if path:
            current = REPO / path
            if not current.is_file():
                missing.append(path)
        if name and current is not None and not re.search(rf"^def {name}\(", current.read_text(), re.MULTILINE):
            missing.append(f"{current.relative_to(REPO)}::{name}")
    assert missing == []
