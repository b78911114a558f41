"""Helpers of the command-line tests (``tests`` is on ``sys.path``, see pyproject)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from typer.testing import CliRunner, Result

from xrdmtl.cli import app

WAVELENGTH = "0.561"  # Å, of the bundled example patterns


def invoke(*args: object) -> Result:
    """Run ``xrdmtl ARGS`` in this process (stdout and stderr kept apart)."""
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "100"})


def digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def error_lines(result: Result) -> list[str]:
    """The ``error:`` lines of a run's stderr."""
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]
