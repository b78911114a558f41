"""Architectures, safetensors + JSON round trip and clear errors for bad model files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from xrdmtl.errors import ModelError
from xrdmtl.model.files import load_model, probabilities, save_model
from xrdmtl.model.networks import ARCHITECTURES, ConvTrunk, PairMax, build_model, n_parameters
from xrdmtl.model.preprocess import N_CHANNELS
from xrdmtl.physics.grid import QGrid

GRID = QGrid(0.8, 5.0, 512)
PHASES = ["bastnaesite", "calcite", "rhenium"]


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(0).random((6, N_CHANNELS, GRID.n), dtype=np.float32)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("n_phases", [1, 2, 4])
def test_forward_shape_any_number_of_phases(arch: str, n_phases: int, x: np.ndarray) -> None:
    net = build_model(arch, [f"p{i}" for i in range(n_phases)], GRID).eval()
    with torch.no_grad():
        out = net(torch.from_numpy(x))
    assert out.shape == (6, n_phases, 2)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("width", [7, 8, 33])
def test_pair_max_is_max_pooling(width: int) -> None:
    x = torch.randn(3, 5, 1, width).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    ref = torch.nn.functional.max_pool2d(x, (1, 2))
    out = PairMax()(x)
    assert out.shape == ref.shape
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    (g_out,) = torch.autograd.grad(out.sum(), x)
    (g_ref,) = torch.autograd.grad(ref.sum(), x)
    torch.testing.assert_close(g_out, g_ref)


def test_trunk_stem_folds_neighbouring_points_into_channels() -> None:
    """The first conv sees channel ``c·fold + f`` = input channel c at point ``fold·l + f``."""
    trunk = ConvTrunk(2, [3], [1], fold=4).eval()
    conv, bn = trunk.blocks[0], trunk.blocks[1]
    assert isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d)
    x = torch.randn(2, 2, 30)  # padded to 32 points
    with torch.no_grad():
        folded = torch.nn.functional.pad(x, (0, 2)).reshape(2, 2, 8, 4).transpose(2, 3)
        pre = torch.einsum("oi,bil->bol", conv.weight[:, :, 0, 0], folded.reshape(2, 8, 8))
        ref = torch.relu(torch.nn.functional.max_pool1d(bn(pre[:, :, None])[:, :, 0], 2))
        out = trunk(x)
    torch.testing.assert_close(out, ref.transpose(1, 2))


def test_binary_budget_matches_multitask() -> None:
    mtl = n_parameters(build_model("mtl", PHASES))
    binary = n_parameters(build_model("binary", PHASES))
    assert abs(binary - mtl) / mtl < 0.1


def test_default_model_size_limit() -> None:
    assert n_parameters(build_model("mtl", PHASES)) * 4 < 5e6


@pytest.mark.parametrize("arch", ["mtl", "binary"])
def test_round_trip_identical_outputs(tmp_path, arch: str, x: np.ndarray) -> None:
    net = build_model(arch, PHASES, GRID).eval()
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    save_model(tmp_path / "m", net, {"training": {"seed": 3}})
    exact = load_model(tmp_path / "m", device="cpu", fuse=False)
    np.testing.assert_array_equal(exact.logits(x), ref)
    fused = load_model(tmp_path / "m" / "model.safetensors", device="cpu")
    np.testing.assert_allclose(fused.logits(x), ref, atol=1e-5)
    assert fused.phases == PHASES and fused.grid == GRID
    assert fused.meta["training"] == {"seed": 3}
    assert not fused.net.training


def test_float16_weights_load_as_float32(tmp_path, x: np.ndarray) -> None:
    net = build_model("mtl", PHASES, GRID).eval()
    save_model(tmp_path, net, dtype="float16")
    loaded = load_model(tmp_path, device="cpu")
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(loaded.logits(x), ref, atol=1e-2)


def test_temperature_scales_probabilities(tmp_path, x: np.ndarray) -> None:
    net = build_model("mtl", PHASES, GRID).eval()
    save_model(tmp_path, net, {"calibration": {"temperature": [2.0, 1.0, 0.5]}})
    loaded = load_model(tmp_path, device="cpu")
    z = loaded.logits(x)
    d = (z[..., 1] - z[..., 0]) / np.array([2.0, 1.0, 0.5])
    np.testing.assert_allclose(loaded.predict_proba(x), 1 / (1 + np.exp(-d)), rtol=1e-5)
    np.testing.assert_allclose(
        probabilities(z), 1 / (1 + np.exp(-(z[..., 1] - z[..., 0]))), rtol=1e-5
    )


def _saved(tmp_path) -> tuple:
    folder = tmp_path / "m"
    save_model(folder, build_model("mtl", PHASES, GRID))
    return folder, json.loads((folder / "model.json").read_text())


def test_wrong_shape_weights(tmp_path) -> None:
    folder, meta = _saved(tmp_path)
    meta["architecture"]["kwargs"]["hidden"] = 32
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="has shape") as err:
        load_model(folder)
    assert "\n" not in str(err.value)


def test_weights_of_another_architecture(tmp_path) -> None:
    folder, meta = _saved(tmp_path)
    meta["architecture"] = {"name": "paper", "kwargs": {}}
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="do not match"):
        load_model(folder)


@pytest.mark.parametrize("key", ["phases", "grid", "architecture"])
def test_missing_metadata_key(tmp_path, key: str) -> None:
    folder, meta = _saved(tmp_path)
    del meta[key]
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=key):
        load_model(folder)


def test_missing_or_corrupt_files(tmp_path) -> None:
    folder, _ = _saved(tmp_path)
    with pytest.raises(ModelError, match="no model metadata"):
        load_model(tmp_path / "nowhere")
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="corrupt weights"):
        load_model(folder)
    (folder / "model.json").write_text("{ not json")
    with pytest.raises(ModelError, match="corrupt metadata"):
        load_model(folder)
    (folder / "model.json").unlink()
    with pytest.raises(ModelError, match="no model metadata"):
        load_model(folder)


def test_unknown_architecture_and_bad_lists(tmp_path) -> None:
    folder, meta = _saved(tmp_path)
    (folder / "model.json").write_text(json.dumps({**meta, "thresholds": [0.5]}))
    with pytest.raises(ModelError, match="thresholds"):
        load_model(folder)
    (folder / "model.json").write_text(json.dumps({**meta, "architecture": {"name": "resnet"}}))
    with pytest.raises(ModelError, match="unknown architecture"):
        load_model(folder)


def test_model_json_that_disagrees_with_the_weights_or_is_from_the_future(tmp_path) -> None:
    """Swapped phase names would send every call to the wrong phase; one phase too many or few does
    not fit the heads; a newer format version or another format is not silently read."""
    folder, meta = _saved(tmp_path)
    cases = {
        "trained for bastnaesite, calcite, rhenium": {
            "phases": ["calcite", "bastnaesite", "rhenium"]
        },
        "rhenium, quartz but the weights": {
            "phases": [*PHASES, "quartz"],
            "thresholds": [0.5] * 4,
            "calibration": {"temperature": [1.0] * 4},
        },
        "format version 99": {"format_version": 99},
        "is not 'xrdmtl-model'": {"format": "other"},
    }
    for words, change in cases.items():
        (folder / "model.json").write_text(json.dumps({**meta, **change}))
        with pytest.raises(ModelError) as err:
            load_model(folder)
        assert words in str(err.value) and "\n" not in str(err.value)
    (folder / "model.json").write_text(json.dumps(meta))
    assert load_model(folder).phases == PHASES


def test_the_shipped_model_states_its_phases_in_the_weights() -> None:
    from safetensors import safe_open

    from xrdmtl.model.files import default_model_dir

    with safe_open(str(default_model_dir() / "model.safetensors"), "pt") as fh:
        phases = json.loads(fh.metadata()["phases"])
    assert phases == load_model(default_model_dir()).phases == PHASES


def test_wrong_input_shape(tmp_path) -> None:
    folder, _ = _saved(tmp_path)
    model = load_model(folder, device="cpu")
    with pytest.raises(ModelError, match="expects"):
        model.predict_proba(np.zeros((2, N_CHANNELS, GRID.n + 1), np.float32))


def test_version_1_model_on_three_channels_still_loads_and_predicts(tmp_path) -> None:
    """A model saved before the log-contrast channel (preprocessing version 1) picks channels 0–2."""
    folder = tmp_path / "v1"
    net = build_model("mtl", PHASES, GRID, input_channels=(0, 1, 2))
    save_model(folder, net)
    meta = json.loads((folder / "model.json").read_text())
    meta["preprocessing"] = {**meta["preprocessing"], "version": 1}
    (folder / "model.json").write_text(json.dumps(meta))
    x = np.random.default_rng(1).random((3, N_CHANNELS, GRID.n), dtype=np.float32)
    p = load_model(folder, device="cpu").predict_proba(x)
    with torch.no_grad():
        ref = probabilities(net.eval()(torch.from_numpy(x)).numpy())
    assert p.shape == (3, len(PHASES))
    assert np.allclose(p, ref, atol=1e-4)


def test_version_2_model_reading_the_old_contrast_channel_is_refused(tmp_path) -> None:
    """Version 3 changed the contrast channel's unit: a version-2 model reading it would see other
    numbers than it was trained on, so it is refused with what to do; one on channels 0–2 loads."""
    folder, meta = _saved(tmp_path)
    meta["preprocessing"] = {**meta["preprocessing"], "version": 2}
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="retrain"):
        load_model(folder)
    three = tmp_path / "v2-three-channels"
    save_model(three, build_model("mtl", PHASES, GRID, input_channels=(0, 1, 2)))
    meta = json.loads((three / "model.json").read_text())
    meta["preprocessing"] = {**meta["preprocessing"], "version": 2}
    (three / "model.json").write_text(json.dumps(meta))
    assert load_model(three).phases == list(PHASES)


def test_newer_preprocessing_version_is_refused(tmp_path) -> None:
    folder, meta = _saved(tmp_path)
    meta["preprocessing"] = {**meta["preprocessing"], "version": 99}
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="preprocessing version 99"):
        load_model(folder)
