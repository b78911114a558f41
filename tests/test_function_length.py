"""Small functions: none in the package runs over 120 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import xrdmtl

PACKAGE = Path(xrdmtl.__file__).parent
MAX_LINES = 120


def _functions(path: Path) -> list[tuple[str, int]]:
    """(qualified name, lines from ``def`` to its last line) of every function in ``path``."""
    out: list[tuple[str, int]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                out.append((name, (child.end_lineno or child.lineno) - child.lineno + 1))
                walk(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")
            else:
                walk(child, prefix)

    walk(ast.parse(path.read_text(encoding="utf-8")), "")
    return out


def _lengths() -> dict[tuple[str, str], int]:
    return {
        (path.relative_to(PACKAGE).as_posix(), name): n
        for path in sorted(PACKAGE.rglob("*.py"))
        for name, n in _functions(path)
    }


def test_no_function_over_120_lines() -> None:
    long = {k: n for k, n in _lengths().items() if n > MAX_LINES}
    assert not long, "\n".join(f"{f}: {name} has {n} lines" for (f, name), n in long.items())
