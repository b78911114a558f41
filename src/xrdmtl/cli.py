"""The ``xrdmtl`` command line: a thin typer wrapper over the public API.

Every command prints :class:`~xrdmtl.errors.XrdmtlError` as one line (no traceback) and exits non-zero
when any input failed, after processing the rest.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import typer
from rich.console import Console

from .errors import XrdmtlError

app = typer.Typer(
    name="xrdmtl",
    help="Phase identification in micro-XRD patterns with multi-task deep learning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
simulate_app = typer.Typer(help="Write synthetic patterns or detector frames with labels.", no_args_is_help=True)
app.add_typer(simulate_app, name="simulate")

console = Console()
err_console = Console(stderr=True)


def clean_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the project's errors into one red line on stderr and exit code 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except XrdmtlError as exc:
            err_console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False, soft_wrap=True)
            sys.exit(2)

    return wrapper


def main() -> None:  # pragma: no cover - console entry point
    app()
