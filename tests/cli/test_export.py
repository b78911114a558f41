"""``xrdmtl export --onnx``: the shipped network with an adapter as one ONNX graph; onnxruntime gives
the model's probabilities to 1e-5 on the shipped examples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from clitools import invoke

from xrdmtl.cli.beamline import _example_inputs
from xrdmtl.model.adapter import Adapter, reference_features
from xrdmtl.model.files import default_model_dir, load_model, save_adapted

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.mark.slow
def test_onnx_round_trip_with_adapter(tmp_path: Path) -> None:
    base = load_model(default_model_dir(), device="cpu")
    x = _example_inputs(base)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(len(x), len(base.phases))).astype(np.uint8)
    voting = np.ones(labels.shape, bool)
    voting[::3, 1] = False  # a few labels left out of one phase's vote
    adapter = Adapter(reference_features(x[::-1]), labels, 0.8, 3, 0.2, voting)
    folder = save_adapted(tmp_path / "adapted", default_model_dir(), adapter, {})
    out = tmp_path / "adapted.onnx"
    result = invoke("export", "--onnx", out, "--model", folder)
    assert result.exit_code == 0, result.stderr
    assert "and its adapter (in the same graph)" in result.stdout
    model = load_model(folder, device="cpu")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    p_onnx, logits = session.run(None, {"x": x.astype(np.float32)})
    assert np.max(np.abs(p_onnx - model.predict_proba(x))) <= 1e-5
    assert np.max(np.abs(logits - model.logits(x))) <= 1e-4
    assert np.max(np.abs(p_onnx - model.network_proba(x))) > 0.05  # the vote is in the graph
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["xrdmtl.phases"]) == model.phases


@pytest.mark.slow
def test_onnx_round_trip_with_a_recalibrated_network(tmp_path: Path) -> None:
    """An adapter that only shifts the network's logits (finetune's choice on independent
    patterns) is in the graph too."""
    from xrdmtl.model.export import export_onnx, onnx_difference

    base = load_model(default_model_dir(), device="cpu")
    x = _example_inputs(base)
    labels = np.zeros((len(x), len(base.phases)), np.uint8)
    shift = np.array([0.7, -1.2, 0.4])
    adapter = Adapter(reference_features(x), labels, 0.0, 1, 1.0, None, shift)
    model = load_model(save_adapted(tmp_path / "recal", default_model_dir(), adapter, {}))
    assert np.max(np.abs(model.predict_proba(x) - base.predict_proba(x))) > 0.01
    out = export_onnx(model, tmp_path / "recal.onnx")
    assert onnx_difference(out, model, x) <= 1e-5


def test_export_refuses_a_folder(tmp_path: Path) -> None:
    result = invoke("export", "--onnx", tmp_path)
    assert result.exit_code == 2 and "is a folder" in result.stderr
