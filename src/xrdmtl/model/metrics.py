"""Classification metrics for multi-label phase calls, in plain numpy.

``labels`` and ``calls`` are 0/1 arrays ``(n, T)``; ``scores`` are probabilities ``(n, T)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata


def accuracy(labels: np.ndarray, calls: np.ndarray) -> np.ndarray:
    """Per-phase fraction of right calls, ``(T,)``."""
    return np.asarray((np.asarray(labels) == np.asarray(calls)).mean(axis=0))


def exact_match(labels: np.ndarray, calls: np.ndarray) -> float:
    """Fraction of patterns with every phase called right."""
    return float((np.asarray(labels) == np.asarray(calls)).all(axis=1).mean())


def precision_recall_f1(labels: np.ndarray, calls: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def classification_report(labels: np.ndarray, calls: np.ndarray, scores: np.ndarray, phases: Sequence[str]) -> dict[str, Any]:
    """All metrics as a JSON-ready dict: per phase accuracy, precision, recall, F1, ROC AUC; exact match."""
    acc = accuracy(labels, calls)
    precision, recall, f1 = precision_recall_f1(labels, calls)
    auc = roc_auc(labels, scores)

    def num(v: float) -> float | None:
        return None if np.isnan(v) else round(float(v), 4)

    per_phase = {
        name: {"accuracy": num(acc[i]), "precision": num(precision[i]), "recall": num(recall[i]),
               "f1": num(f1[i]), "roc_auc": num(auc[i]), "positives": int(np.asarray(labels)[:, i].sum())}
        for i, name in enumerate(phases)
    }
    return {"n": int(len(labels)), "exact_match": num(exact_match(labels, calls)) if len(labels) else None,
            "phases": per_phase}
