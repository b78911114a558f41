"""A model as one ONNX graph, for beamline control systems (``xrdmtl export --onnx``).

The graph takes the model input ``x`` ``(batch, 4, n)`` (:func:`~xrdmtl.model.preprocess.model_input`
of a pattern on the model's Q grid; the grid, the phases and the thresholds are in the ONNX file's
metadata) and gives ``probabilities`` ``(batch, phases)``: the calibrated network, and where the model
folder holds an adapter (``xrdmtl finetune``) its reference vote blended in, as ONNX operators in the
same graph (its references are constants of the graph), exactly as
:meth:`~xrdmtl.model.adapter.Adapter.combine` blends them. ``logits`` ``(batch, phases, 2)`` are the
network's raw output. :func:`onnx_difference` runs the file with onnxruntime against the model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import write_bytes
from ..errors import ModelError
from .adapter import SIMILARITY_SCALE, Adapter
from .files import LoadedModel
from .preprocess import CONTRAST_CHANNEL, N_CHANNELS

OPSET = 18


class AdapterVote(nn.Module):
    """:meth:`Adapter.combine` in torch operators (top-k neighbours per phase, weighted vote, gate)."""

    features: torch.Tensor  # buffers: the references' features (R, G), labels and votes (R, T)
    labels: torch.Tensor
    voting: torch.Tensor

    def __init__(self, adapter: Adapter) -> None:
        super().__init__()
        self.register_buffer("features", torch.from_numpy(np.asarray(adapter.features, np.float32)))
        self.register_buffer("labels", torch.from_numpy(np.asarray(adapter.labels, np.float32)))
        self.register_buffer("voting", torch.from_numpy(np.asarray(adapter.votes, bool)))
        self.k = max(1, min(int(adapter.k), len(adapter.labels)))
        self.weight = float(adapter.weight)
        self.threshold = float(adapter.threshold)

    def forward(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        f = x[:, CONTRAST_CHANNEL]
        f = f / torch.clamp(torch.linalg.vector_norm(f, dim=1, keepdim=True), min=1e-12)
        sim = f @ self.features.T  # (B, R)
        s = torch.where(self.voting[None], sim[:, :, None], torch.tensor(float("-inf")))
        near, idx = torch.topk(s, self.k, dim=1)  # (B, k, T)
        s_max = near[:, 0]  # topk sorts: the nearest first
        weights = torch.exp((near - s_max[:, None]) / SIMILARITY_SCALE)
        weights = torch.where(torch.isfinite(near), weights, torch.zeros_like(weights))
        votes = torch.gather(self.labels[None].expand(x.shape[0], -1, -1), 1, idx)
        vote = (weights * votes).sum(dim=1) / torch.clamp(weights.sum(dim=1), min=1e-30)
        w = self.weight * torch.sigmoid((s_max - self.threshold) / SIMILARITY_SCALE)
        return w * vote + (1.0 - w) * p


class Probabilities(nn.Module):
    """Model input → (calibrated probabilities, recalibrated and blended with the adapter's vote
    as :meth:`Adapter.combine` does; raw logits)."""

    temperature: torch.Tensor
    shift: torch.Tensor

    def __init__(self, model: LoadedModel) -> None:
        super().__init__()
        self.net = model.net
        self.register_buffer("temperature", torch.from_numpy(model.temperature.copy()))
        self.vote = None if model.adapter is None else AdapterVote(model.adapter)
        shift = np.zeros(len(model.phases)) if model.adapter is None else model.adapter.shifts
        self.register_buffer("shift", torch.from_numpy(np.asarray(shift, np.float32)))
        self.recalibrated = bool(np.any(shift))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(x)
        d = (logits[..., 1] - logits[..., 0]) / self.temperature
        p = torch.sigmoid(torch.clamp(d, -60.0, 60.0))
        if self.recalibrated:  # adapter.recalibrate: the clipped logit, shifted
            q = torch.clamp(p, 1e-6, 1.0 - 1e-6)
            p = torch.sigmoid(torch.log(q / (1.0 - q)) + self.shift)
        if self.vote is not None:
            p = self.vote(x, p)
        return p, logits


def onnx_metadata(model: LoadedModel) -> dict[str, str]:
    """What a control system needs beside the graph: phases, thresholds, grid, input channels."""
    return {
        "xrdmtl.phases": json.dumps(model.phases),
        "xrdmtl.thresholds": json.dumps([float(t) for t in model.thresholds]),
        "xrdmtl.grid": json.dumps(model.meta["grid"]),
        "xrdmtl.input": f"model_input(intensity, coverage, q_step): (batch, {N_CHANNELS}, "
        f"{model.grid.n}) float32 on the grid",
        "xrdmtl.adapter": "blended in the graph" if model.adapter is not None else "none",
    }


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's notes (optional torchvision operators, deprecations) kept off the terminal."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def export_onnx(model: LoadedModel, out: str | Path) -> Path:
    """Write ``model`` (network, calibration, adapter) as one ONNX graph to ``out`` (atomically)."""
    import onnx

    module = Probabilities(model).to("cpu").eval()
    x = torch.zeros(2, N_CHANNELS, model.grid.n)
    with tempfile.TemporaryDirectory() as tmp, _quiet():
        path = Path(tmp) / "model.onnx"
        try:
            torch.onnx.export(
                module,
                (x,),
                str(path),
                input_names=["x"],
                output_names=["probabilities", "logits"],
                dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        except Exception as exc:  # the exporter's own error types
            raise ModelError(f"cannot export to ONNX: {type(exc).__name__}: {exc}") from exc
        proto = onnx.load(str(path))
    for key, value in onnx_metadata(model).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = "xrdmtl phase probabilities from the model input (see metadata)"
    write_bytes(out, proto.SerializeToString())
    return Path(out)


def onnx_difference(path: str | Path, model: LoadedModel, x: np.ndarray) -> float:
    """Largest |p_onnxruntime − p_model| over model inputs ``x`` (B, C, G)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (p_onnx,) = session.run(["probabilities"], {"x": np.ascontiguousarray(x, np.float32)})
    return float(np.max(np.abs(p_onnx - model.predict_proba(x))))
