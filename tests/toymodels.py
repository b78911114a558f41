"""A tiny untrained model of the three default targets, for tests that need a model folder fast."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from xrdmtl.model.files import save_model
from xrdmtl.model.networks import build_model
from xrdmtl.physics.grid import QGrid
from xrdmtl.training.train import TrainConfig

TINY = {"channels": [4, 8, 8], "kernels": [3, 3, 3], "fold": 8, "hidden": 8}
PHASES = ["bastnaesite", "calcite", "rhenium"]


def toy_model(folder: Path) -> Path:
    """Write the model to ``folder``; its provenance rebuilds the default synthesis."""
    net = build_model("mtl", PHASES, QGrid(), **TINY)
    config = TrainConfig(arch_kwargs=TINY, val_size=32, calib_size=32, device="cpu")
    save_model(folder, net, {"training": {"config": asdict(config)}})
    return folder
