"""Fixtures of the command-line tests: example patterns, simulated frames, a CLI runner."""

from __future__ import annotations

import hashlib
import shutil
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from xrdmtl.cli import app

WAVELENGTH = "0.561"  # Å, of the bundled example patterns


def invoke(*args: str) -> Result:
    """Run ``xrdmtl ARGS`` in this process (stdout and stderr kept apart)."""
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "100"})


def digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def error_lines(result: Result) -> list[str]:
    """The ``error:`` lines of a run's stderr."""
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A copy of the bundled example patterns (``.npy``, 2θ at 0.561 Å) and their labels.csv."""
    src = Path(str(resources.files("xrdmtl") / "data" / "examples"))
    dst = tmp_path / "examples"
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="session")
def frames_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two simulated EDF frames with their geometry (``frames/``, ``geometry.poni``), made once."""
    out = tmp_path_factory.mktemp("frames") / "run"
    res = invoke("simulate", "frames", "--n", "2", "--out", out, "--seed", "1")
    assert res.exit_code == 0, res.output
    return out
