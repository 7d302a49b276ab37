"""The shape of the va2att package in a checkout: modules at the top level, folders, import arrows, import
cycles, imports that run upward against the pipeline's order, and the longest functions.

    python benchmarks/package_shape.py [CHECKOUT]        # default: this repository

Each module is placed in a layer of the pipeline (tests/test_architecture.py's LEVELS, bottom to top: util,
config and run_dir, faces, data, model, serving, evaluation, training, prediction, experiments, cli). In a
checkout from before the package had those folders, a module is placed by the folder it moved to
(`MOVED`), so both shapes are measured with the same order. An import arrow is one module importing another
(at any depth in the file, deferred imports included); a cycle is a strongly connected group of two or more
modules; an upward import goes from a module to one of a higher layer. The documented module commands that
hand over to va2att.cli (va2att.predict, ...) are counted as the layer of the tool they run.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

LEVELS = {"util": 0, "config": 1, "run_dir": 1, "faces": 2, "data": 3, "model": 4, "serving": 5, "evaluation": 6,
          "training": 7, "prediction": 8, "experiments": 9, "cli": 10}
# Where the modules of the flat package went (the layer each belongs to).
MOVED = {
    "fileio": "util", "locking": "util", "checks": "util", "quiet": "util",
    "face_detection": "faces", "face_tracking": "faces", "face_input": "faces",
    "data.images": "faces", "data.align": "faces",
    "model": "model", "heads": "model", "gcn": "model", "losses": "model", "metrics": "model", "flops": "model",
    "layers": "model",
    "trainer": "training", "callbacks": "training", "schedule": "training", "precise_batch_norm": "training",
    "distribute": "training", "multiworker": "training", "console": "training", "tensorboard_figures": "training",
    "trend": "training",
    "evaluation": "evaluation", "per_video": "evaluation", "plots": "evaluation",
    "export": "serving", "folded_inference": "serving", "signature": "serving", "loading": "serving",
    "encoded_images": "serving", "graph_ops": "serving", "provenance": "serving",
    "annotate": "prediction", "predictor": "prediction", "predict": "cli",
}
COMMANDS = {"predict": "cli", "data.prepare": "cli", "data.synthetic.__main__": "cli", "experiments.__main__": "cli",
            "serving.client": "cli"}


def modules(package: Path) -> dict[str, Path]:
    out = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def layer(module: str, flat: bool) -> int | None:
    rest = module.split(".", 1)[1] if "." in module else ""
    if not rest:
        return None
    if not flat and rest in COMMANDS:
        return LEVELS[COMMANDS[rest]]
    if flat:
        for old, new in sorted(MOVED.items(), key=lambda kv: -len(kv[0])):
            if rest == old or rest.startswith(old + "."):
                return LEVELS[new]
    return LEVELS.get(rest.split(".")[0])


def arrows(known: dict[str, Path]) -> dict[str, set[str]]:
    edges = {}
    for name, path in known.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            else:
                continue
            for target in names:
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != "va2att" and target != name and not name.startswith(target + "."):
                    found.add(target)
        edges[name] = found
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan)."""
    index, low, stack, on, groups, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return groups


def longest_functions(known: dict[str, Path], top: int = 3) -> list[tuple[int, str]]:
    found = []
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((node.end_lineno - node.lineno + 1, f"{name}.{node.name}"))
    return sorted(found, reverse=True)[:top]


def shape(checkout: Path) -> dict:
    package = checkout / "va2att"
    known = modules(package)
    flat = not (package / "training").is_dir()
    edges = arrows(known)
    upward = sorted(f"{s} -> {t}" for s, ts in edges.items() for t in ts
                    if layer(s, flat) is not None and layer(t, flat) is not None and layer(t, flat) > layer(s, flat))
    return {
        "top_level_modules": sum(1 for p in package.glob("*.py") if p.name != "__init__.py"),
        "folders": sum(1 for p in package.rglob("*") if p.is_dir() and (p / "__init__.py").is_file()) - 1,
        "files": len(known),
        "import_arrows": sum(len(t) for t in edges.values()),
        "import_cycles": cycles(edges),
        "upward_imports": upward,
        "longest_functions": longest_functions(known),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", nargs="?", default=str(Path(__file__).resolve().parents[1]))
    found = shape(Path(parser.parse_args(argv).checkout))
    for key, value in found.items():
        if isinstance(value, list):
            print(f"{key}: {len(value)}")
            for item in value:
                print(f"    {item}")
        else:
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
