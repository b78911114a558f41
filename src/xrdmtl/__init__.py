"""xrdmtl: which crystalline phases are in a micro-XRD pattern, by multi-task deep learning.

The public API, imported lazily so that ``import xrdmtl`` stays light::

    import xrdmtl
    pattern = xrdmtl.load_pattern("scan.xy", wavelength=0.561)
    predictions = xrdmtl.Predictor().predict_patterns([pattern])
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "XrdmtlError": "errors",
    "PatternError": "errors",
    "FrameError": "errors",
    "ModelError": "errors",
    "PhaseError": "errors",
    "LabelsError": "errors",
    "QGrid": "grid",
    "DEFAULT_GRID": "grid",
    "Pattern": "patterns",
    "load_pattern": "readers",
    "Phase": "phases",
    "get_phase": "phases",
    "TARGETS": "phases",
    "model_input": "preprocess",
    "Synthesizer": "synth",
    "SynthConfig": "synth",
    "FrameSimulator": "framesim",
    "Integrator": "frames",
    "read_frames": "frames",
    "auto_mask": "frames",
    "load_model": "models",
    "save_model": "models",
    "train": "training",
    "finetune": "training",
    "TrainConfig": "training",
    "Predictor": "predict",
    "Prediction": "predict",
    "audit_labels": "audit",
    "run_experiment": "experiments",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'xrdmtl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
