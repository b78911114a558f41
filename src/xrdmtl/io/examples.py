"""The measured example patterns shipped with the package (``xrdmtl examples`` copies them out)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def examples_dir() -> Path:
    """Folder of the shipped examples: six of the paper's measured HDAC patterns (``.npy``, 2θ at
    0.561 Å) with ``labels.csv``, and in ``run/`` 29 raw patterns of one run, every other one labeled
    (``labels_every_other.csv``; the others' labels in ``labels_rest.csv``)."""
    return Path(str(resources.files("xrdmtl") / "data" / "examples"))
