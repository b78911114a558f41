"""The one evaluation: every metric of calls against labels."""

from __future__ import annotations

import numpy as np

from xrdmtl.model.metrics import classification_report, evaluate


def test_evaluation_counts_and_report() -> None:
    labels = np.array([[1, 0], [1, 1], [0, 0], [0, 1]])
    calls = np.array([[1, 0], [0, 1], [0, 1], [0, 1]])
    scores = np.array([[0.9, 0.1], [0.4, 0.8], [0.2, 0.7], [0.1, 0.9]])
    ev = evaluate(labels, calls, scores)
    assert ev.n == 4 and ev.exact_match == 0.5
    assert ev.confusion.tolist() == [[1, 0, 1, 2], [2, 1, 0, 1]]  # tp, fp, fn, tn
    assert ev.accuracy.tolist() == [0.75, 0.75] and ev.roc_auc[0] == 1.0
    report = classification_report(labels, calls, scores, ["a", "b"])
    assert report["n"] == 4 and report["exact_match"] == 0.5
    assert report["phases"]["a"]["recall"] == 0.5 and report["phases"]["b"]["positives"] == 2


def test_an_empty_set_has_no_exact_match() -> None:
    ev = evaluate(np.zeros((0, 2)), np.zeros((0, 2)))
    assert ev.n == 0 and np.isnan(ev.exact_match)
    assert (
        classification_report(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((0, 2)), ["a", "b"])[
            "exact_match"
        ]
        is None
    )


def test_a_phase_with_nothing_to_count_is_not_a_perfect_score() -> None:
    """No positive label and no call: precision, recall and F1 are n/a (None), not 1.0; a phase
    called once without a positive has precision 0 and recall n/a."""
    labels = np.array([[1, 0, 0], [0, 0, 0], [1, 0, 0]])
    calls = np.array([[1, 0, 1], [0, 0, 0], [1, 0, 0]])
    phases = classification_report(labels, calls, calls.astype(float), ["a", "b", "c"])["phases"]
    assert phases["a"]["precision"] == 1.0 and phases["a"]["f1"] == 1.0
    assert [phases["b"][k] for k in ("precision", "recall", "f1")] == [None, None, None]
    assert phases["c"]["precision"] == 0.0 and phases["c"]["recall"] is None
    assert phases["c"]["f1"] == 0.0 and phases["b"]["accuracy"] == 1.0
