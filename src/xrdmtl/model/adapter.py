"""The user's labeled patterns as a reference set beside the network (what ``xrdmtl finetune`` fits).

Patterns of one run resemble their neighbours (same cell, fluid, texture, background), and a user's
labels carry the user's conventions. An :class:`Adapter` keeps the labeled patterns' features and
labels; a new pattern's probability for each phase blends the network's (calibrated) probability
with a similarity-weighted vote of its ``k`` most similar references::

    p = w · g(s_max) · vote + (1 − w · g(s_max)) · p_network

``w`` (the vote's weight) and ``k`` are chosen by leave-one-out on the labeled set
(:mod:`xrdmtl.training.adapt`); ``g`` fades the vote out for patterns less similar to every reference
than the labeled patterns are to each other (``gate``), so a pattern of a stage nobody labeled is left
to the network. ``w = 0`` is the network alone.

Features: the model input's log-contrast channel (background removed, fixed log scale), L2-normalised,
so similarity is the cosine of two background-free patterns on the model's Q grid. It is computed
for every prediction anyway, so the adapter costs one matrix product per batch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from .preprocess import CONTRAST_CHANNEL

FEATURE = "log_contrast_cosine"
SIMILARITY_SCALE = 0.02  # cosine units: how sharply the vote prefers the nearest references


def reference_features(x: np.ndarray) -> np.ndarray:
    """Unit-norm features ``(B, G)`` float32 from model input ``x: (B, C, G)``."""
    f = np.asarray(x[:, CONTRAST_CHANNEL], dtype=np.float32)
    norm = np.linalg.norm(f, axis=1, keepdims=True)
    out: np.ndarray = f / np.maximum(norm, np.float32(1e-12))
    return out


def neighbour_vote(
    similarity: np.ndarray, labels: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-phase vote ``(B, T)`` in [0, 1] of the ``k`` most similar references, weighted by
    ``exp((s - s_max) / SIMILARITY_SCALE)``, and each row's highest similarity ``(B,)``.

    ``similarity: (B, R)``, ``-inf`` where a reference may not vote; ``labels: (R, T)``."""
    k = max(1, min(int(k), similarity.shape[1]))
    if k < similarity.shape[1]:
        idx = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    else:
        idx = np.broadcast_to(np.arange(k), similarity.shape)
    s = np.take_along_axis(similarity, idx, axis=1)
    s_max = s.max(axis=1)
    weights = np.exp((s - s_max[:, None]) / SIMILARITY_SCALE)
    weights = np.where(np.isfinite(s), weights, 0.0)
    total = np.maximum(weights.sum(axis=1, keepdims=True), 1e-30)
    vote = np.einsum("bk,bkt->bt", weights, labels[idx].astype(np.float64)) / total
    return vote, s_max


def gate(s_max: np.ndarray, threshold: float) -> np.ndarray:
    """Weight in (0, 1) of the vote for a pattern whose nearest reference has similarity ``s_max``."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-(s_max - threshold) / SIMILARITY_SCALE))


@dataclass(frozen=True)
class Adapter:
    """Reference features ``(R, G)`` and labels ``(R, T)`` with the blend chosen for them."""

    features: np.ndarray
    labels: np.ndarray
    weight: float
    k: int
    threshold: float

    def __post_init__(self) -> None:
        if (
            self.features.ndim != 2
            or self.labels.ndim != 2
            or len(self.features) != len(self.labels)
        ):
            raise ModelError(
                f"adapter references and labels do not match: {self.features.shape}, {self.labels.shape}"
            )
        if len(self.features) == 0:
            raise ModelError("the adapter has no reference pattern")
        if not 0.0 <= self.weight <= 1.0 or self.k < 1 or not np.isfinite(self.threshold):
            raise ModelError(
                f"bad adapter settings: weight {self.weight}, k {self.k}, gate {self.threshold}"
            )

    def with_references(self, features: np.ndarray, labels: np.ndarray) -> Adapter:
        """The same blend with more references (e.g. confidently labeled patterns of the run)."""
        return replace(
            self,
            features=np.concatenate([self.features, np.asarray(features, np.float32)]),
            labels=np.concatenate([self.labels, np.asarray(labels, np.uint8)]),
        )

    def vote_weight(self, s_max: np.ndarray) -> np.ndarray:
        """The weight ``w · g(s_max)`` of the vote for each pattern ``(B,)``."""
        return self.weight * gate(s_max, self.threshold)

    def combine(self, x: np.ndarray, p_network: np.ndarray) -> np.ndarray:
        """Probabilities ``(B, T)``: the network's ``p_network`` blended with the references' vote
        for model input ``x: (B, C, G)``."""
        if self.weight == 0.0:
            return p_network
        f = reference_features(x)
        if f.shape[1] != self.features.shape[1]:
            raise ModelError(
                f"input has {f.shape[1]} grid points, the adapter's references {self.features.shape[1]}"
            )
        vote, s_max = neighbour_vote(f @ self.features.T, self.labels, self.k)
        w = self.vote_weight(s_max)[:, None]
        blended: np.ndarray = w * vote + (1.0 - w) * np.asarray(p_network, np.float64)
        return blended.astype(p_network.dtype)

    def settings(self, file: str) -> dict[str, Any]:
        """The JSON part of the adapter (``model.json['adapter']``); the arrays go to ``file``."""
        return {
            "feature": FEATURE,
            "file": file,
            "n_references": int(len(self.labels)),
            "weight": float(self.weight),
            "k": int(self.k),
            "gate": float(self.threshold),
            "similarity_scale": SIMILARITY_SCALE,
        }

    def tensors(self) -> dict[str, np.ndarray]:
        """The arrays to store (safetensors)."""
        return {
            "features": np.ascontiguousarray(self.features, np.float32),
            "labels": np.ascontiguousarray(self.labels, np.uint8),
        }


def adapter_from(settings: dict[str, Any], folder: Path, n_phases: int) -> Adapter:
    """The adapter described by ``model.json['adapter']``, its arrays read from ``folder``."""
    from safetensors.numpy import load_file

    try:
        if settings.get("feature") != FEATURE:
            raise ModelError(f"unknown adapter feature {settings.get('feature')!r}", folder)
        arrays = load_file(str(folder / str(settings["file"])))
        adapter = Adapter(
            arrays["features"].astype(np.float32),
            arrays["labels"].astype(np.uint8),
            float(settings["weight"]),
            int(settings["k"]),
            float(settings["gate"]),
        )
    except ModelError:
        raise
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise ModelError(f"cannot read the adapter: {type(exc).__name__}: {exc}", folder) from exc
    if adapter.labels.shape[1] != n_phases:
        raise ModelError(
            f"the adapter's labels have {adapter.labels.shape[1]} phases, the model {n_phases}",
            folder,
        )
    return adapter
