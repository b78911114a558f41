"""The adapter: reference vote, gate, blend, and its file round trip."""

from __future__ import annotations

import numpy as np
import pytest

from xrdmtl.errors import ModelError
from xrdmtl.model.adapter import Adapter, adapter_from, neighbour_vote, reference_features
from xrdmtl.model.preprocess import CONTRAST_CHANNEL, N_CHANNELS


def _inputs(rows: np.ndarray) -> np.ndarray:
    x = np.zeros((len(rows), N_CHANNELS, rows.shape[1]), np.float32)
    x[:, CONTRAST_CHANNEL] = rows
    return x


def test_vote_takes_the_nearest_references() -> None:
    sim = np.array([[0.9, 0.1, 0.5], [0.1, 0.2, 0.95]])
    labels = np.array([[1, 0], [0, 1], [1, 1]], np.uint8)
    vote, s_max = neighbour_vote(sim, labels, k=1)
    assert vote.tolist() == [[1.0, 0.0], [1.0, 1.0]] and s_max.tolist() == [
        [0.9, 0.9],
        [0.95, 0.95],
    ]
    vote3, _ = neighbour_vote(sim, labels, k=3)
    assert vote3[0, 0] > 0.99 and vote3[0, 1] < 0.01  # far references barely count


def test_vote_ignores_references_that_may_not_vote() -> None:
    sim = np.array([[-np.inf, 0.5]])
    vote, s_max = neighbour_vote(sim, np.array([[1], [0]], np.uint8), k=2)
    assert vote.tolist() == [[0.0]] and s_max.tolist() == [[0.5]]


def test_vote_per_phase_skips_labels_that_may_not_vote() -> None:
    sim = np.array([[0.9, 0.5, 0.1]])
    labels = np.array([[1, 1], [0, 0], [0, 1]], np.uint8)
    voting = np.array([[False, True], [True, True], [True, True]])
    vote, s_max = neighbour_vote(sim, labels, k=1, voting=voting)
    assert vote.tolist() == [[0.0, 1.0]] and s_max.tolist() == [[0.5, 0.9]]
    none = np.array([[False, True]] * 3)  # nobody votes on phase 0: no vote, and no similarity
    vote, s_max = neighbour_vote(sim, labels, k=2, voting=none)
    assert vote[0, 0] == 0.0 and s_max[0, 0] == -np.inf


def test_combine_blends_by_weight_and_gate() -> None:
    rng = np.random.default_rng(0)
    refs = rng.normal(size=(4, 64)).astype(np.float32)
    labels = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], np.uint8)
    f = reference_features(_inputs(refs))
    p_net = np.full((4, 2), 0.3, np.float32)
    full = Adapter(f, labels, weight=1.0, k=1, threshold=0.5).combine(_inputs(refs), p_net)
    np.testing.assert_allclose(full, labels, atol=1e-6)  # each pattern is its own nearest reference
    half = Adapter(f, labels, weight=0.5, k=1, threshold=0.5).combine(_inputs(refs), p_net)
    np.testing.assert_allclose(half, 0.5 * labels + 0.15, atol=1e-6)
    off = Adapter(f, labels, weight=0.0, k=1, threshold=0.5).combine(_inputs(refs), p_net)
    np.testing.assert_array_equal(off, p_net)
    stranger = rng.normal(size=(1, 64)).astype(
        np.float32
    )  # unlike every reference: the gate closes
    gated = Adapter(f, labels, weight=1.0, k=1, threshold=0.9).combine(_inputs(stranger), p_net[:1])
    np.testing.assert_allclose(gated, p_net[:1], atol=1e-3)


def test_bad_settings_are_model_errors(tmp_path) -> None:
    f = np.ones((2, 8), np.float32)
    with pytest.raises(ModelError):
        Adapter(f, np.zeros((3, 1), np.uint8), 0.5, 1, 0.5)
    with pytest.raises(ModelError):
        Adapter(f, np.zeros((2, 1), np.uint8), 1.5, 1, 0.5)
    with pytest.raises(ModelError, match="cannot read the adapter"):
        adapter_from({"feature": "log_contrast_cosine", "file": "missing.safetensors", "weight": 1,
                      "k": 1, "gate": 0.5}, tmp_path, 1)  # fmt: skip
    with pytest.raises(ModelError, match="unknown adapter feature"):
        adapter_from({"feature": "pixels"}, tmp_path, 1)


def test_voting_mask_round_trips_and_older_files_vote_on_every_label(tmp_path) -> None:
    from safetensors.numpy import save_file

    f = reference_features(_inputs(np.random.default_rng(1).normal(size=(3, 16))))
    labels = np.array([[1, 0], [0, 1], [1, 1]], np.uint8)
    voting = np.array([[True, True], [False, True], [True, True]])
    adapter = Adapter(f, labels, 1.0, 1, 0.5, voting)
    settings = adapter.settings("adapter.safetensors")
    assert settings["n_labels_left_out"] == 1
    save_file(adapter.tensors(), str(tmp_path / "adapter.safetensors"))
    loaded = adapter_from(settings, tmp_path, 2)
    np.testing.assert_array_equal(loaded.votes, voting)
    older = {k: v for k, v in adapter.tensors().items() if k != "voting"}
    save_file(older, str(tmp_path / "adapter.safetensors"))
    assert adapter_from(settings, tmp_path, 2).votes.all()
    with pytest.raises(ModelError, match="voting mask"):
        Adapter(f, labels, 1.0, 1, 0.5, voting[:2])


def test_whether_the_check_decides_round_trips_and_older_files_let_it_decide(tmp_path) -> None:
    from safetensors.numpy import save_file

    f = reference_features(_inputs(np.random.default_rng(2).normal(size=(2, 16))))
    adapter = Adapter(f, np.array([[1], [0]], np.uint8), 1.0, 1, 0.5, check=False)
    settings = adapter.settings("adapter.safetensors")
    save_file(adapter.tensors(), str(tmp_path / "adapter.safetensors"))
    assert settings["check"] is False and adapter_from(settings, tmp_path, 1).check is False
    older = {k: v for k, v in settings.items() if k != "check"}
    assert adapter_from(older, tmp_path, 1).check is True
    with pytest.raises(ModelError, match="'check' must be true or false"):
        adapter_from({**settings, "check": "no"}, tmp_path, 1)
