"""Choosing the adapter by leave-one-out."""

from __future__ import annotations

import numpy as np
import pytest

from xrdmtl.errors import LabelsError
from xrdmtl.model.preprocess import CONTRAST_CHANNEL, N_CHANNELS
from xrdmtl.training.adapt import AdaptConfig, fit_adapter


def _clusters(rng: np.random.Generator, labels: np.ndarray, noise: float = 0.05) -> np.ndarray:
    """Patterns that resemble the others of their label combination (one run's stages)."""
    centres = {tuple(r): rng.normal(size=128) for r in np.unique(labels, axis=0)}
    x = np.zeros((len(labels), N_CHANNELS, 128), np.float32)
    for i, row in enumerate(labels):
        x[i, CONTRAST_CHANNEL] = centres[tuple(row)] + noise * rng.normal(size=128)
    return x


def test_vote_wins_where_the_labels_follow_neighbours() -> None:
    rng = np.random.default_rng(1)
    labels = np.repeat(np.array([[0, 0], [1, 0], [0, 1]], np.uint8), 5, axis=0)
    x = _clusters(rng, labels)
    p_net = np.full(labels.shape, 0.2)  # a network that sees nothing
    fit = fit_adapter(x, labels, p_net, [0.5, 0.5])
    assert fit.chosen.weight > 0 and fit.chosen.exact == 1.0
    assert len(fit.candidates) == len(AdaptConfig().weights) * len(AdaptConfig().ks)
    assert fit.adapter.features.shape == (15, 128) and not fit.left_out


def test_network_wins_where_neighbours_say_nothing() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, size=(16, 2)).astype(np.uint8)
    x = np.zeros((16, N_CHANNELS, 128), np.float32)
    x[:, CONTRAST_CHANNEL] = rng.normal(size=(16, 128))  # no structure: the vote is a coin
    p_net = np.where(labels == 1, 0.9, 0.1)  # a network that is right
    fit = fit_adapter(x, labels, p_net, [0.5, 0.5])
    assert fit.chosen.weight == 0.0 and fit.chosen.exact == 1.0


def test_contradicted_references_are_left_out_when_that_scores_better() -> None:
    rng = np.random.default_rng(3)
    labels = np.repeat(np.array([[0], [1]], np.uint8), 6, axis=0)
    x = _clusters(rng, labels)
    wrong = labels.copy()
    wrong[0] = 1  # a label the pattern contradicts, flagged by the audit
    # its twin: the flagged pattern is its only close neighbour, so the bad label would spread
    x[1, CONTRAST_CHANNEL] = x[0, CONTRAST_CHANNEL] + 0.001 * rng.normal(size=128)
    flagged = np.zeros(12, bool)
    flagged[0] = True
    fit = fit_adapter(x, wrong, np.full((12, 1), 0.5 - 1e-3), [0.5], flagged)
    assert fit.chosen.policy == "drop" and fit.left_out == [0] and not fit.labels_left_out
    kept = fit_adapter(
        x, wrong, np.full((12, 1), 0.5 - 1e-3), [0.5], flagged, AdaptConfig(contradicted="keep")
    )
    assert kept.chosen.policy == "keep" and kept.left_out == []


def test_a_contradicted_label_can_leave_the_vote_alone() -> None:
    """A pattern with one contradicted label still votes on its other phases. Stage [1, 1] has two
    patterns, one labeled [0, 1] (the audit contradicts its phase-0 label): dropping it would leave
    the other to the neighbouring stage [1, 0]; keeping its label would spread the error."""
    rng = np.random.default_rng(5)
    c00, c10 = rng.normal(size=128), rng.normal(size=128)
    c11 = c10 + 0.6 * rng.normal(size=128)  # a stage beside [1, 0]
    centres = [c00] * 4 + [c10] * 4 + [c11] * 3
    x = np.zeros((11, N_CHANNELS, 128), np.float32)
    for i, c in enumerate(centres):
        x[i, CONTRAST_CHANNEL] = c + 0.05 * rng.normal(size=128)
    labels = np.array([[0, 0]] * 4 + [[1, 0]] * 4 + [[0, 1], [1, 1], [1, 1]], np.uint8)
    contradicted = np.zeros(labels.shape, bool)
    contradicted[8, 0] = True
    p_net = np.full(labels.shape, 0.2)  # a network that sees nothing
    fit = fit_adapter(x[:10], labels[:10], p_net[:10], [0.5, 0.5], contradicted[:10])
    assert fit.chosen.policy == "drop-labels" and fit.chosen.weight > 0
    assert fit.left_out == [] and fit.labels_left_out == [(8, 0)]
    assert not fit.adapter.votes[8, 0] and fit.adapter.votes.sum() == 19
    # a new pattern of that stage takes phase 0 from the other of its stage, not the wrong label
    p = fit.adapter.combine(x[10:], np.full((1, 2), 0.2, np.float32))
    assert (p > 0.5).tolist() == [[True, True]]
    # one flag per pattern (every label suspect) makes the two policies the same: scored once
    whole = fit_adapter(x[:10], labels[:10], p_net[:10], [0.5, 0.5], contradicted[:10, 0])
    assert {c.policy for c in whole.candidates} == {"keep", "drop"}


def test_too_few_labels_and_bad_config() -> None:
    with pytest.raises(LabelsError):
        fit_adapter(
            np.zeros((1, N_CHANNELS, 8), np.float32), np.zeros((1, 1)), np.zeros((1, 1)), [0.5]
        )
    with pytest.raises(ValueError):
        AdaptConfig(contradicted="maybe")


def test_confident_unlabeled_patterns_join_the_references() -> None:
    from xrdmtl.training.adapt import pseudo_labeled

    rng = np.random.default_rng(4)
    labels = np.repeat(np.array([[0], [1]], np.uint8), 5, axis=0)
    x = _clusters(rng, np.concatenate([labels, labels]))
    fit = fit_adapter(x[:10], labels, np.full((10, 1), 0.5), [0.5])
    assert fit.chosen.weight == 1.0
    p_net = np.full((10, 1), 0.5, np.float32)
    feats, calls, sure = pseudo_labeled(fit.adapter, x[10:], p_net, [0.5])
    assert sure.all() and calls[:, 0].tolist() == labels[:, 0].tolist() and feats.shape == (10, 128)
    grown = fit.adapter.with_references(feats, calls)
    assert len(grown.labels) == 20 and grown.weight == fit.adapter.weight
    network_only = type(fit.adapter)(fit.adapter.features, fit.adapter.labels, 0.0, 1, 0.5)
    assert not pseudo_labeled(network_only, x[10:], p_net, [0.5])[2].any()
