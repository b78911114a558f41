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
    assert fit.chosen.drop_contradicted and fit.left_out == [0]
    kept = fit_adapter(
        x, wrong, np.full((12, 1), 0.5 - 1e-3), [0.5], flagged, AdaptConfig(contradicted="keep")
    )
    assert not kept.chosen.drop_contradicted and kept.left_out == []


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
