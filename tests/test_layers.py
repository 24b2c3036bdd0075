"""The folders are the layers: a module imports only from its own layer or the ones below it,
and no two modules import each other, directly or round a loop, at run time or for typing.

Read from the source with `ast`, so that an import inside a function counts as much as one at
the top: a lazy import hides a cycle from Python but not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Where each part of the `jointspace` namespace lives in the repo (pyproject.toml's package-dir).
SOURCES = {"jointspace": ROOT / "jointspace", "jointspace.client": ROOT / "clients/python/jointspace/client",
           "jointspace.encoders": ROOT / "encoders", "jointspace.server": ROOT / "server"}

# Lowest first. A module may import its own layer and those listed before it.
LAYERS = [
    # The client distribution (clients/python) ships alone: it may import nothing else of ours.
    ("client", ["jointspace.v1", "jointspace.client"]),
    ("core", ["jointspace.core"]),
    ("data", ["jointspace.data"]),
    ("encoders", ["jointspace.encoders"]),
    ("server", ["jointspace.server"]),
    ("quality", ["jointspace.quality"]),
    ("apps", ["jointspace.cli", "jointspace.demo", "jointspace.bench"]),
]
# Inside a layer's package, its folders are layers of their own, in the same sense.
SUBLAYERS = {
    "jointspace.encoders": ["jointspace.encoders", "jointspace.encoders.impl", "jointspace.encoders.registry",
                            "jointspace.encoders.inference", "jointspace.encoders.training"],
    "jointspace.server": ["jointspace.server", "jointspace.server.index", "jointspace.server.build",
                          "jointspace.server.serving", "jointspace.server.api"],
}
# Layers that only some modules of the layer below may use: (importer prefix, imported prefix).
NOT_ALLOWED = [
    # Serving a model must not load the trainer (TFRS and all it pulls in).
    ("jointspace.server", "jointspace.encoders.training"),
    ("jointspace.encoders.inference", "jointspace.encoders.training"),
]


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join([package, *parts])
            if not name.startswith("jointspace.v1"):
                found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every jointspace module `name` imports, resolved to a module that exists."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            if target == "jointspace.v1" or target.startswith("jointspace.v1."):
                continue  # the stubs: the bottom layer, not read (and not the package `jointspace`)
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target.startswith("jointspace") and target != name and target in MODULES:
                imported.add(target)
    return imported


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _rank(name: str, layers: list[str]) -> int:
    """The index of the longest layer prefix `name` falls under, -1 for none."""
    best, rank = "", -1
    for i, prefix in enumerate(layers):
        if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > len(best):
            best, rank = prefix, i
    return rank


def _layer(name: str) -> int:
    if name == "jointspace":  # the package's __init__: the environment TensorFlow needs, nothing else
        return 1
    flat = [(i, prefix) for i, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes]
    best, rank = "", -1
    for i, prefix in flat:
        if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > len(best):
            best, rank = prefix, i
    return rank


def test_every_module_belongs_to_a_layer():
    assert [m for m in MODULES if _layer(m) < 0] == []


def test_no_module_imports_a_higher_layer():
    upward = []
    for name, imported in GRAPH.items():
        for target in imported:
            if _layer(target) > _layer(name):
                upward.append(f"{name} -> {target}")
            for package, sublayers in SUBLAYERS.items():
                inside = name.startswith(package + ".") and target.startswith(package + ".")
                if inside and _rank(target, sublayers) > _rank(name, sublayers):
                    upward.append(f"{name} -> {target}")
            upward += [f"{name} -> {target}" for importer, banned in NOT_ALLOWED
                       if _rank(name, [importer]) == 0 and _rank(target, [banned]) == 0]
    assert sorted(upward) == []


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(GRAPH[name]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target] if target in path else [name, target])
            elif target not in state:
                visit(target, path + [target])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert cycles == []


@pytest.mark.parametrize("sample", ["jointspace.server.api.app", "jointspace.encoders.inference"])
def test_the_checks_see_real_imports(sample):
    """Guards the guard: the graph is not empty for modules known to import others."""
    assert GRAPH[sample]
