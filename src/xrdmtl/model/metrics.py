"""Classification metrics for multi-label phase calls, in plain numpy: the one place they are computed.

``labels`` and ``calls`` are 0/1 arrays ``(n, T)``; ``scores`` are probabilities ``(n, T)``.
:func:`evaluate` computes every metric once (:class:`Evaluation`); the report of ``xrdmtl evaluate``
(:func:`classification_report`), the experiment's per-set figures and training's validation rows are
views of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata


def accuracy(labels: np.ndarray, calls: np.ndarray) -> np.ndarray:
    """Per-phase fraction of right calls, ``(T,)`` (NaN for no patterns)."""
    right = np.asarray(labels) == np.asarray(calls)
    return right.mean(axis=0) if len(right) else np.full(right.shape[1:], np.nan)


def exact_match(labels: np.ndarray, calls: np.ndarray) -> float:
    """Fraction of patterns with every phase called right (NaN for no patterns)."""
    right = (np.asarray(labels) == np.asarray(calls)).all(axis=1)
    return float(right.mean()) if len(right) else float("nan")


def precision_recall_f1(
    labels: np.ndarray, calls: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-phase precision, recall and F1, ``(T,)`` each; 0/0 counts as 1 (nothing to find, none called)."""
    y = np.asarray(labels).astype(bool)
    c = np.asarray(calls).astype(bool)
    tp = (y & c).sum(axis=0)
    fp = (~y & c).sum(axis=0)
    fn = (y & ~c).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 1.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 1.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 1.0)
    return precision, recall, f1


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-phase area under the ROC curve (Mann–Whitney U with tied ranks); NaN where one class is absent."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=float)
    out = np.full(y.shape[1], np.nan)
    for t in range(y.shape[1]):
        pos, n = int(y[:, t].sum()), y.shape[0]
        if 0 < pos < n:
            ranks = rankdata(s[:, t])
            out[t] = (ranks[y[:, t]].sum() - pos * (pos + 1) / 2) / (pos * (n - pos))
    return out


@dataclass(frozen=True)
class Evaluation:
    """Every metric of one set of calls against its labels (per-phase arrays ``(T,)``)."""

    n: int
    exact_match: float  # NaN for an empty set
    accuracy: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    roc_auc: np.ndarray  # NaN where one class is absent, or without scores
    confusion: np.ndarray  # (T, 4): tp, fp, fn, tn
    positives: np.ndarray


def evaluate(labels: np.ndarray, calls: np.ndarray, scores: np.ndarray | None = None) -> Evaluation:
    """All metrics of ``calls`` (0/1, ``(n, T)``) against ``labels``; ROC AUC from ``scores`` if given."""
    y = np.asarray(labels).astype(bool)
    c = np.asarray(calls).astype(bool)
    precision, recall, f1 = precision_recall_f1(y, c)
    confusion = np.stack(
        [(y & c).sum(0), (~y & c).sum(0), (y & ~c).sum(0), (~y & ~c).sum(0)], axis=1
    )
    n_phases = y.shape[1] if y.ndim == 2 else 0
    return Evaluation(
        n=int(len(y)),
        exact_match=exact_match(y, c),
        accuracy=accuracy(y, c),
        precision=precision,
        recall=recall,
        f1=f1,
        roc_auc=roc_auc(y, scores) if scores is not None else np.full(n_phases, np.nan),
        confusion=confusion.astype(int),
        positives=y.sum(0).astype(int),
    )


def classification_report(
    labels: np.ndarray, calls: np.ndarray, scores: np.ndarray, phases: Sequence[str]
) -> dict[str, Any]:
    """All metrics as a JSON-ready dict: per phase accuracy, precision, recall, F1, ROC AUC; exact
    match. A ratio with nothing to count (precision with no call, recall and F1 with no positive
    label and no call) is None ("n/a"), never a perfect 1."""
    ev = evaluate(labels, calls, scores)
    tp, fp, fn = (ev.confusion[:, k] for k in range(3))
    undefined = np.full(len(tp), np.nan)
    acc, auc = ev.accuracy, ev.roc_auc
    precision = np.where(tp + fp > 0, ev.precision, undefined)
    recall = np.where(tp + fn > 0, ev.recall, undefined)
    f1 = np.where(2 * tp + fp + fn > 0, ev.f1, undefined)

    def num(v: float) -> float | None:
        return None if np.isnan(v) else round(float(v), 4)

    per_phase = {
        name: {
            "accuracy": num(acc[i]),
            "precision": num(precision[i]),
            "recall": num(recall[i]),
            "f1": num(f1[i]),
            "roc_auc": num(auc[i]),
            "positives": int(ev.positives[i]),
        }
        for i, name in enumerate(phases)
    }
    return {"n": ev.n, "exact_match": num(ev.exact_match) if ev.n else None, "phases": per_phase}
