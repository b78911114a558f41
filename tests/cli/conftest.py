"""Fixtures of the command-line tests: example patterns, simulated frames."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import pytest
from clitools import invoke


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
