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
    assert fit.regime.repeats and fit.chosen.kind == "vote" and fit.chosen.exact == 1.0
    # the network, the network recalibrated, and every vote blend
    assert len(fit.candidates) == 2 + len(AdaptConfig().weights) * len(AdaptConfig().ks)
    assert fit.adapter.features.shape == (15, 128) and not fit.left_out
    assert (
        fit.estimate is not None and fit.estimate.exact == 1.0 and fit.estimate.kinds["vote"] == 15
    )


def test_network_wins_where_neighbours_say_nothing() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, size=(16, 2)).astype(np.uint8)
    x = np.zeros((16, N_CHANNELS, 128), np.float32)
    x[:, CONTRAST_CHANNEL] = rng.normal(size=(16, 128))  # no structure: the vote is a coin
    p_net = np.where(labels == 1, 0.9, 0.1)  # a network that is right
    fit = fit_adapter(x, labels, p_net, [0.5, 0.5])
    assert fit.chosen.weight == 0.0 and fit.chosen.exact == 1.0


def _independent(rng: np.random.Generator, n: int, t: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Independent draws: each phase adds its own peaks on a random grid of intensities, so a
    pattern's nearest neighbour shares some phases but its label combination only by chance."""
    labels = rng.integers(0, 2, size=(n, t)).astype(np.uint8)
    signatures = rng.normal(size=(t, 128))
    x = np.zeros((n, N_CHANNELS, 128), np.float32)
    x[:, CONTRAST_CHANNEL] = labels @ signatures * 0.3 + rng.normal(size=(n, 128))
    return x, labels


def _a_decent_network(rng: np.random.Generator, labels: np.ndarray, wrong: float) -> np.ndarray:
    """Probabilities of a network that is right on each label with probability ``1 − wrong``."""
    right = rng.random(labels.shape) > wrong
    sure = rng.uniform(0.6, 0.95, size=labels.shape)
    return np.where(right == labels.astype(bool), sure, 1 - sure)


def test_independent_patterns_keep_the_network_and_the_estimate_does_not_flatter() -> None:
    """Labels that do not follow their neighbours: no vote and no shift beats the network clearly
    (over many draws the adapted model is never worse on new patterns), and the nested estimate
    lies near what the network scores on new patterns."""
    rng = np.random.default_rng(7)
    outcomes, estimates, truths = [], [], []
    for _ in range(6):
        x, labels = _independent(rng, 450)
        p = _a_decent_network(rng, labels, 0.07)
        fit = fit_adapter(x[:50], labels[:50], p[:50], [0.5, 0.5, 0.5])
        assert not fit.regime.repeats and "independent" in fit.regime.describe()
        adapted = fit.adapter.combine(x[50:], p[50:].astype(np.float32)) > 0.5
        new = (adapted == labels[50:].astype(bool)).all(axis=1).mean()
        network = ((p[50:] > 0.5) == labels[50:].astype(bool)).all(axis=1).mean()
        outcomes.append(new - network)
        assert fit.estimate is not None
        estimates.append(fit.estimate.exact)
        truths.append(new)
    assert min(outcomes) >= 0.0
    assert abs(np.mean(estimates) - np.mean(truths)) < 0.05


def test_a_blend_that_only_looks_better_is_not_taken() -> None:
    """A candidate a little better than the network on a few labels is noise: the margin grows as
    the evidence thins, so with 8 labels one more right pattern does not replace the network."""
    from xrdmtl.training.adapt import Candidate, Margin, clearly_better

    def cand(rows: list[float], right: list[bool]) -> Candidate:
        return Candidate("vote", 0.5, 1, "keep", float(np.mean(right)), float(np.mean(rows)),
                         (), tuple(rows), tuple(right))  # fmt: skip

    null = cand([0.10] * 8, [True] * 6 + [False] * 2)
    slightly = cand([0.09, 0.11, 0.08, 0.12, 0.09, 0.10, 0.07, 0.10], [True] * 7 + [False])
    strict = Margin(2.0, 1.0, 1)
    assert not clearly_better(slightly, null, strict)
    much = cand([0.01] * 8, [True] * 8)
    assert clearly_better(much, null, strict)
    worse = cand([0.2] * 8, [True] * 8)  # more right calls but a worse proper score
    assert not clearly_better(worse, null, strict)


def test_recalibration_is_taken_where_the_network_is_biased() -> None:
    """A network whose probabilities sit below the threshold for a present phase (a new beamline's
    weaker peaks) is shifted back; leave-one-out of the shift matches refitting without each."""
    from xrdmtl.model.adapter import recalibrate
    from xrdmtl.training.adapt import fit_shifts, score_recalibrated

    rng = np.random.default_rng(11)
    x, labels = _independent(rng, 60, 2)
    p = _a_decent_network(rng, labels, 0.02)
    p[:, 1] = np.where(labels[:, 1] == 1, 0.35, 0.05)  # phase 1 present reads 0.35: always missed
    fit = fit_adapter(x, labels, p, [0.5, 0.5])
    assert fit.chosen.kind == "recalibrated" and fit.chosen.shift[1] > 0.7
    assert fit.chosen.exact > fit.network.exact
    shifted = fit.adapter.combine(x, p.astype(np.float32))
    assert ((shifted > 0.5) == labels.astype(bool)).mean() > 0.95
    loo = score_recalibrated(p, labels, np.array([0.5, 0.5]), AdaptConfig())
    by_refit = np.array(
        [recalibrate(p[i], fit_shifts(np.delete(p, i, 0), np.delete(labels, i, 0), 2.0))
         for i in range(60)]
    )  # fmt: skip
    assert np.allclose(
        np.asarray(loo.brier_rows), ((by_refit - labels) ** 2).mean(axis=1), atol=1e-3
    )


def test_the_nested_estimate_repeats_the_whole_choice() -> None:
    """With labels that are pure noise, the best candidate's leave-one-out figure is flattered by
    the choice among many; the nested estimate is not."""
    from xrdmtl.model.adapter import reference_features
    from xrdmtl.training.adapt import nested_estimate

    rng = np.random.default_rng(12)
    labels = rng.integers(0, 2, size=(30, 1)).astype(np.uint8)
    x = np.zeros((30, N_CHANNELS, 64), np.float32)
    x[:, CONTRAST_CHANNEL] = rng.normal(size=(30, 64))
    p = rng.uniform(0.3, 0.7, size=(30, 1))
    fit = fit_adapter(x, labels, p, [0.5])
    best = max(c.exact for c in fit.candidates)
    assert fit.estimate is not None and fit.estimate.exact <= best
    again = nested_estimate(
        reference_features(x),
        labels,
        p,
        np.array([0.5]),
        np.zeros(labels.shape, bool),
        AdaptConfig(),
    )
    assert again == fit.estimate and sum(again.kinds.values()) == 30


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
    with pytest.raises(ValueError, match="vote weights"):
        AdaptConfig(weights=(0.0, 0.5))
    with pytest.raises(ValueError, match="non-negative"):
        AdaptConfig(z_brier=-1.0)


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


def test_unlabeled_patterns_join_with_the_calls_predict_will_make() -> None:
    """Where the adapter lets the physics check decide, an unlabeled pattern joins the references
    with the checked call; where the check only reports, with the adapted call."""
    import dataclasses

    from xrdmtl.training.adapt import pseudo_labeled

    rng = np.random.default_rng(4)
    labels = np.repeat(np.array([[0], [1]], np.uint8), 5, axis=0)
    x = _clusters(rng, np.concatenate([labels, labels]))
    fit = fit_adapter(x[:10], labels, np.full((10, 1), 0.5), [0.5])
    p_net = np.full((10, 1), 0.5, np.float32)
    seen: list[np.ndarray] = []

    def check(p: np.ndarray, rows: np.ndarray) -> np.ndarray:  # the physics reads phase 0 absent
        seen.append(rows)
        return np.zeros_like(p)

    deciding = dataclasses.replace(fit.adapter, check=True)
    _, calls, sure = pseudo_labeled(deciding, x[10:], p_net, [0.5], check)
    assert sure.all() and not calls.any() and seen[0].tolist() == list(range(10))
    reporting = dataclasses.replace(fit.adapter, check=False)
    _, calls, sure = pseudo_labeled(reporting, x[10:], p_net, [0.5], check)
    assert sure.all() and calls[:, 0].tolist() == labels[:, 0].tolist() and len(seen) == 1


def test_a_choice_the_nested_check_does_not_bear_out_is_overruled() -> None:
    """12 independent patterns whose neighbours happen to agree: leave-one-out prefers a vote, but
    made without each pattern in turn that choice scores below the network, so the network stays."""
    rng = np.random.default_rng(5)
    x, labels = _independent(rng, 12)
    p = _a_decent_network(rng, labels, 0.1)
    fit = fit_adapter(x, labels, p, [0.5] * 3)
    assert fit.regime.repeats  # the neighbours agree by chance as often as the network is right
    assert fit.overruled is not None and fit.overruled.kind == "vote"
    assert fit.chosen.kind == "network" and fit.adapter.weight == 0.0
    assert fit.estimate is not None and fit.estimate.exact == fit.network.exact
    assert fit.estimate.kinds["vote"] > 0  # the vote was chosen in some of the nested choices


def test_the_check_only_reports_where_the_runs_labels_follow_a_convention() -> None:
    """A run's stage labels say phase 0 throughout stage B, but the physics check reads it absent
    in some of those patterns (a convention the pattern does not bear out): the vote follows the
    labels and the check only reports. Where the check bears the labels out, it keeps deciding."""
    rng = np.random.default_rng(1)
    labels = np.repeat(np.array([[0, 0], [1, 0], [0, 1]], np.uint8), 5, axis=0)
    x = _clusters(rng, labels)
    p_net = np.full(labels.shape, 0.2)

    def physics(p: np.ndarray, rows: np.ndarray) -> np.ndarray:
        out = np.array(p, np.float64)
        out[np.isin(rows, [5, 6, 7]), 0] = 0.02  # stage B's first patterns: phase 0 not there
        return out

    fit = fit_adapter(x, labels, p_net, [0.5, 0.5], check=physics)
    assert fit.chosen.kind == "vote" and fit.chosen.checked is False and not fit.adapter.check
    assert fit.chosen.exact == 1.0 and "the physics check only reports" in fit.chosen.describe()
    assert fit.estimate is not None and fit.estimate.exact == 1.0

    def agrees(p: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.where(labels[rows] == 1, 0.97, 0.03)

    fit = fit_adapter(x, labels, p_net, [0.5, 0.5], check=agrees)
    assert fit.chosen.checked is True and fit.adapter.check and fit.network.exact == 1.0


def test_the_network_keeps_the_shipped_check() -> None:
    """Independent patterns and a network that is right: the network is kept, and its check keeps
    deciding though it costs one of the labeled patterns (a few labels do not outweigh it)."""
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, size=(16, 2)).astype(np.uint8)
    x = np.zeros((16, N_CHANNELS, 128), np.float32)
    x[:, CONTRAST_CHANNEL] = rng.normal(size=(16, 128))
    p_net = np.where(labels == 1, 0.9, 0.1)

    def costly(p: np.ndarray, rows: np.ndarray) -> np.ndarray:
        out = np.array(p, np.float64)
        out[rows == 3] = 1.0 - out[rows == 3]
        return out

    fit = fit_adapter(x, labels, p_net, [0.5, 0.5], check=costly)
    assert fit.chosen.kind == "network" and fit.chosen.checked is True and fit.adapter.check
    assert fit.network.exact == 15 / 16
