"""The import graph of src/odkit follows the declared layers, with no cycles (issue 17).

Every ``import`` / ``from ... import`` of an odkit module is read with ``ast`` (module level and inside
functions alike), so a lazy import cannot hide an upward dependency. A package may import from its own
package and from packages in lower layers; never from a higher layer or from a sibling in the same layer.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"

# Lowest first. One row = one layer; packages in the same row do not import each other.
LAYERS: list[set[str]] = [
    {"odkit.version", "odkit.errors", "odkit.protos"},
    {"odkit.runtime", "odkit.fileio", "odkit.devices", "odkit.drawing", "odkit.masks"},
    {"odkit.config"},
    {"odkit.data"},
    {"odkit.inference"},  # runtime on exported models: numpy, Pillow, onnxruntime; no torch
    {"odkit.core"},
    {"odkit.models"},
    {"odkit.builders"},
    {"odkit.inputs"},
    {"odkit.checkpoints"},
    {"odkit.tfcompat"},
    {"odkit.training", "odkit.evaluation", "odkit.export", "odkit.serve"},
    {"odkit.workflows"},  # orchestration: reads a config, wires the libraries together
    {"odkit.cli"},
    {"odkit", "odkit.__main__", "odkit.demo"},  # the public facades
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / "odkit").rglob("*.py")) if not p.name.endswith("_pb2.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[tuple[str, int]]:
    """(imported odkit module, line) for every import in the file, module level or not."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update((a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "odkit")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "odkit":
                continue
            for alias in node.names:  # `from odkit import checkpoints` imports the module odkit.checkpoints
                sub = f"{module}.{alias.name}"
                found.add((sub if sub in known else module, node.lineno))
    return found


def _layer_of(module: str) -> tuple[int, str]:
    """(layer index, the declared package) of the longest declared prefix of ``module``."""
    best: tuple[int, str] | None = None
    for i, row in enumerate(LAYERS):
        for pkg in row:
            if (module == pkg or module.startswith(pkg + ".")) and (best is None or len(pkg) > len(best[1])):
                best = (i, pkg)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_import_layers.py")
    return best


@functools.cache
def _graph() -> dict[str, set[tuple[str, int]]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def upward_imports(graph: dict[str, set[tuple[str, int]]]) -> list[str]:
    bad = []
    for src, targets in sorted(graph.items()):
        layer, pkg = _layer_of(src)
        for dst, line in sorted(targets):
            dst_layer, dst_pkg = _layer_of(dst)
            if dst_pkg != pkg and dst_layer >= layer:
                kind = "sibling" if dst_layer == layer else "upward"
                bad.append(f"{src}:{line} imports {dst} ({kind}: {pkg} is layer {layer}, {dst_pkg} {dst_layer})")
    return bad


def cycles(graph: dict[str, set[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), plus self-imports."""
    edges = {m: sorted({d for d, _ in ts if d in graph}) for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges[v]:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_upward_or_sibling_imports() -> None:
    bad = upward_imports(_graph())
    assert not bad, "imports against the layers (tests/test_import_layers.py LAYERS):\n" + "\n".join(bad)


def test_no_import_cycles() -> None:
    found = cycles(_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_checks_catch_an_upward_import_and_a_cycle() -> None:
    graph = {"odkit.training.trainer": {("odkit.workflows.evaluate", 3)}, "odkit.workflows.evaluate": set()}
    assert upward_imports(graph) == [
        "odkit.training.trainer:3 imports odkit.workflows.evaluate (upward: odkit.training is layer 11, "
        "odkit.workflows 12)"
    ]
    graph = {"odkit.training.trainer": {("odkit.evaluation.evaluator", 3)}, "odkit.evaluation.evaluator": set()}
    assert upward_imports(graph)[0].endswith("(sibling: odkit.training is layer 11, odkit.evaluation 11)")
    graph = {"odkit.data.a": {("odkit.data.b", 1)}, "odkit.data.b": {("odkit.data.c", 1)},
             "odkit.data.c": {("odkit.data.a", 2)}, "odkit.data.d": {("odkit.data.a", 1)}}
    assert upward_imports(graph) == []
    assert cycles(graph) == [["odkit.data.a", "odkit.data.b", "odkit.data.c"]]


def test_relative_and_from_package_imports_resolve(tmp_path: Path) -> None:
    pkg = tmp_path / "src" / "odkit" / "data"
    pkg.mkdir(parents=True)
    f = pkg / "x.py"
    f.write_text("from . import y\nfrom ..errors import OdkitError\nfrom odkit import checkpoints\n"
                 "def f():\n    import odkit.workflows.train\n")
    global SRC
    old, SRC = SRC, tmp_path / "src"
    try:
        got = _imports("odkit.data.x", f, {"odkit.data.y", "odkit.checkpoints"})
    finally:
        SRC = old
    assert got == {("odkit.data.y", 1), ("odkit.errors", 2), ("odkit.checkpoints", 3), ("odkit.workflows.train", 5)}


@pytest.mark.parametrize("start", ["odkit.cli.predict_cmd", "odkit.inference.detector", "odkit.serve.app"])
def test_predict_path_stays_below_torch(start: str) -> None:
    """Everything `odkit predict` / `odkit serve` can import (lazily or not) is in a layer below odkit.core,
    the first that needs torch."""
    graph = _graph()
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m not in seen and m in graph:
            seen.add(m)
            todo.extend(d for d, _ in graph[m])
    torch_layer = _layer_of("odkit.core")[0]
    heavy = sorted(m for m in seen if _layer_of(m)[0] >= torch_layer and _layer_of(m)[1] not in ("odkit.cli", "odkit.serve"))
    assert len(seen) > 3 and not heavy, heavy
