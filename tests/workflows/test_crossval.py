"""Cross-validated adaptation: baseline rows on the same held-out patterns."""

from __future__ import annotations

import numpy as np
import pytest
from toymodels import toy_model

from xrdmtl.io.labels import LabeledPatterns
from xrdmtl.physics.grid import QGrid
from xrdmtl.workflows.crossval import (
    ROWS,
    CrossvalPlan,
    crossvalidate,
    distinct_splits,
    format_table,
    nearest_neighbour_vote,
    strata_of,
    stratified_split,
    training_draw,
    vote_features,
)


def _run_like(n_per_stage: int, seed: int = 0) -> LabeledPatterns:
    """Patterns of three 'stages', each stage one peak set plus noise on a sloping background."""
    rng = np.random.default_rng(seed)
    grid = QGrid()
    q = grid.values
    stages = np.array([[0, 0, 1], [1, 1, 0], [0, 1, 0]], np.uint8)
    peaks = [(1.5, 2.9), (1.26, 2.13, 3.0), (2.1, 3.5)]
    rows, labels = [], []
    for s, centres in enumerate(peaks):
        for _ in range(n_per_stage):
            y = 100 + 20 * q + rng.normal(0, 1, q.size)
            for c in centres:
                y += 50 * np.exp(-0.5 * ((q - c) / 0.01) ** 2)
            rows.append(y)
            labels.append(stages[s])
    intensity = np.asarray(rows, np.float32)
    return LabeledPatterns(intensity, np.ones_like(intensity, bool), np.asarray(labels, np.uint8))


def test_vote_finds_the_pattern_of_the_same_stage() -> None:
    data = _run_like(3)
    f = vote_features(data.intensity, data.coverage)
    assert np.allclose(np.linalg.norm(f, axis=1), 1.0)
    votes = nearest_neighbour_vote(f[[0, 3, 6]], data.labels[[0, 3, 6]], f)
    np.testing.assert_array_equal(votes, data.labels)


def test_crossval_scores_the_three_rows_on_the_same_held_out_patterns(tmp_path) -> None:
    base = toy_model(tmp_path / "base")
    data = _run_like(4)
    files = [f"p{i}.xy" for i in range(12)]
    flagged = np.zeros(12, bool)
    flagged[5] = True
    res = crossvalidate(base, data, files, flagged, CrossvalPlan(ns=(6,), splits=2))
    loo, curve = res.schemes
    assert loo.leave_one_out and loo.held_out == 12 and loo.n_labeled == 11
    assert curve.n_labeled == 6 and curve.held_out == 12 and len(curve.exact["adapted"]) == 2
    for row in ROWS:
        assert 0.0 <= loo.pooled(row) <= 1.0 and len(loo.exact_uncontradicted[row]) == 1
    assert loo.pooled("nearest-neighbour vote") == 1.0  # stages are neighbours
    assert loo.pooled("adapted") == 1.0  # and the adaptation finds it by leave-one-out
    assert res.flagged == ["p5.xy"]
    table = format_table({"run": res})
    assert (
        "| run | 11 (leave-one-out) |" in table
        and "nearest-neighbour vote, uncontradicted" in table
    )
    with pytest.raises(ValueError):
        crossvalidate(base, data, files, plan=CrossvalPlan(ns=(12,), leave_one_out=False))


def test_stratified_split_covers_every_class() -> None:
    labels = np.array([[1, 1, 0]] * 9 + [[0, 1, 0]] * 2 + [[0, 0, 1]] * 7 + [[0, 0, 0]] * 11)
    strata = strata_of(labels)
    for n in (5, 10, 20):
        idx = stratified_split(strata, n, np.random.default_rng(n))
        assert len(idx) == n == len(set(idx.tolist()))
        if n >= 4:
            assert len({strata[i] for i in idx}) == 4
    a = stratified_split(strata, 10, np.random.default_rng([0, 10, 1]))
    b = stratified_split(strata, 10, np.random.default_rng([0, 10, 1]))
    assert (a == b).all()


def test_one_training_draw_for_crossval_and_the_experiment() -> None:
    labels = np.array([[1, 0], [0, 1], [1, 1], [0, 0]] * 6, np.uint8)
    a = training_draw(labels, 8, seed=1, split=2)
    assert np.array_equal(a, training_draw(labels, 8, seed=1, split=2))
    assert not np.array_equal(a, training_draw(labels, 8, seed=1, split=3))
    assert len(a) == 8 and len(np.unique(a)) == 8


def test_splits_beyond_the_distinct_ones_are_capped_and_a_default_n_that_cannot_fit_is_dropped(
    tmp_path,
) -> None:
    """3 stages × 2 patterns: N = 3 (one per stage) has 2³ = 8 distinct draws (N = 5: the stratum
    short of one is fixed, 2); asking 1000 splits
    scores each of the 8 once, with a note; the default curve's N = 10 is dropped with a note."""
    base = toy_model(tmp_path / "base")
    data = _run_like(2)
    assert distinct_splits(data.labels, 3) == 8 and distinct_splits(data.labels, 5) == 2
    notes: list[str] = []
    plan = CrossvalPlan(ns=(3, 10), splits=1000, leave_one_out=False, default_ns=True)
    res = crossvalidate(base, data, [f"p{i}" for i in range(6)], plan=plan, note=notes.append)
    (curve,) = res.schemes
    assert len(curve.exact["adapted"]) == 8 and curve.held_out == 8 * 3
    assert any("N = 10" in n for n in notes) and any("only 8 different" in n for n in notes)
    with pytest.raises(ValueError, match="got 10"):  # an N the user chose is not dropped
        crossvalidate(base, data, [f"p{i}" for i in range(6)], plan=CrossvalPlan(ns=(10,)))
