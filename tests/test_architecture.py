"""The package's shape: folders import only from the folders below them, no import cycles, short functions,
and every `va2att.` name the documentation mentions exists."""

import ast
import importlib
import re
from pathlib import Path

import pytest

import va2att

PACKAGE = Path(va2att.__file__).resolve().parent
REPO = PACKAGE.parent
# Bottom to top: a module may import from its own level or the levels below it.
LEVELS = {
    "util": 0,
    "config": 1, "run_dir": 1,
    "faces": 2,
    "data": 3,
    "model": 4,
    "serving": 5,
    "evaluation": 6,
    "training": 7,
    "prediction": 8,
    "experiments": 9,
    "cli": 10,
}
# The documented module commands kept at their old paths: each hands over to va2att.cli (the top).
SHIMS = {"va2att.predict", "va2att.data.prepare", "va2att.data.synthetic.__main__", "va2att.experiments.__main__",
         "va2att.serving.client"}
FACADE = "va2att"  # va2att/__init__.py: the public names, imported on first use
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path, known) -> set[str]:
    """The va2att modules a file imports, at any depth (deferred imports in functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name.startswith("va2att") and name != "va2att":
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    edges = {}
    for name, path in known.items():
        targets = imports(path, known)
        # importing a.b.c runs the packages a.b and a: their __init__ is not an edge of interest
        edges[name] = {t for t in targets if t != name and not name.startswith(t + ".")}
    return edges


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
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    assert cycles == []


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
        if name and current is not None and not re.search(rf"^def {name}\(", current.read_text(), re.M):
            missing.append(f"{current.relative_to(REPO)}::{name}")
    assert missing == []
