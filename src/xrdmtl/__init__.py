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
    "QGrid": "physics.grid",
    "DEFAULT_GRID": "physics.grid",
    "Pattern": "physics.pattern",
    "load_pattern": "io.readers",
    "examples_dir": "io.examples",
    "ReadOptions": "io.read",
    "Phase": "physics.phases",
    "get_phase": "physics.phases",
    "TARGETS": "physics.phases",
    "model_input": "model.preprocess",
    "Synthesizer": "synthesis.patterns",
    "SynthConfig": "synthesis.patterns",
    "FrameSimulator": "synthesis.frames",
    "Integrator": "io.frames",
    "read_frames": "io.frames",
    "auto_mask": "io.masking",
    "load_model": "model.files",
    "save_model": "model.files",
    "train": "training.train",
    "finetune": "training.finetune",
    "FinetuneConfig": "training.finetune",
    "TrainConfig": "training.train",
    "Predictor": "inference.predictor",
    "Prediction": "inference.results",
    "Flag": "inference.results",
    "audit_labels": "workflows.audit",
    "evaluate_labels": "workflows.evaluate",
    "adapt_to_labels": "workflows.adapt",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'xrdmtl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
