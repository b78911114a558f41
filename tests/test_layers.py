"""The package's layers: a module may import its own layer and the layers below it, never one above.

``errors``, ``atomic``, ``progress`` and ``outputs`` (error types, atomic file writes, the progress
bar, the output rule) are the foundation every layer uses.
Every import counts, at module level or inside a function, ``TYPE_CHECKING`` blocks included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import xrdmtl

PACKAGE = Path(xrdmtl.__file__).parent
LAYERS = (
    "errors",
    "atomic",
    "progress",
    "outputs",
    "physics",
    "io",
    "synthesis",
    "model",
    "training",
    "inference",
    "workflows",
    "cli",
)
RANK = {
    "errors": 0,
    "atomic": 0,
    "progress": 0,
    "outputs": 0,
    **{name: i for i, name in enumerate(LAYERS) if i >= 4},
}


def _layer(module: str) -> str | None:
    """The layer of a dotted module name inside the package (``xrdmtl.physics.units`` → ``physics``)."""
    parts = module.split(".")
    if parts[0] != "xrdmtl" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in RANK else None


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import of the package's own modules in ``path``."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("xrdmtl.")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module == "xrdmtl":  # from xrdmtl import physics / from . import x
                out += [(node.lineno, f"xrdmtl.{a.name}") for a in node.names]
            elif module.startswith("xrdmtl."):
                out.append((node.lineno, module))
    return out


def test_every_module_has_a_layer() -> None:
    top = {
        p.stem if p.is_file() else p.name
        for p in PACKAGE.iterdir()
        if (p.is_file() and p.suffix == ".py") or (p.is_dir() and (p / "__init__.py").exists())
    }
    assert top - {"__init__", "__main__"} <= set(RANK), top - set(RANK)


def test_no_module_imports_a_higher_layer() -> None:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = _layer(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        if own is None:  # xrdmtl/__init__.py (lazy public names) and __main__.py sit on top
            continue
        for line, module in _imports(path):
            other = _layer(module)
            if other is not None and RANK[other] > RANK[own]:
                bad.append(f"{path.relative_to(PACKAGE)}:{line}: {own} imports {module} ({other})")
    assert not bad, "\n".join(bad)


def _module_name(path: Path) -> str:
    """``xrdmtl/io/read.py`` → ``xrdmtl.io.read``; a package's ``__init__.py`` → the package."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Module → the package's modules it imports (``from .pkg import mod`` counts as ``pkg.mod``)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        if name == "xrdmtl":  # the lazy public names sit on top of everything
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = {m for _, m in _imports(path) if m in modules}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                module = ".".join(filter(None, [base, node.module]))
                edges |= {f"{module}.{a.name}" for a in node.names} & modules.keys()
        graph[name] = edges - {name}
    return graph


def test_no_import_cycle() -> None:
    """No module imports, directly or through others, a module that imports it back (every import
    counts, inside functions too): each module can be read, and changed, below its importers."""
    graph = _import_graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(" → ".join(c) for c in cycles)


def test_the_import_graph_holds_known_edges() -> None:
    """The graph holds the edges the cycle check needs (a known import in each direction)."""
    graph = _import_graph()
    assert "xrdmtl.inference.results" in graph["xrdmtl.inference.parallel"]
    assert "xrdmtl.inference.parallel" in graph["xrdmtl.inference.predictor"]  # inside a function
    assert "xrdmtl.io.masking" in graph["xrdmtl.io.frames"]


def test_the_package_never_imports_the_research_harness() -> None:
    """``experiments/`` (beside ``src/``, not installed) imports the package, never the reverse; only
    ``xrdmtl experiment`` loads it, by name, from a source checkout."""
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            bad += [f"{path.relative_to(PACKAGE)}:{node.lineno}: {n}" for n in names
                    if n.split(".")[0] == "experiments"]  # fmt: skip
    assert not bad, "\n".join(bad)
