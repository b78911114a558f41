"""The user's labeled patterns as a reference set beside the network (what ``xrdmtl finetune`` fits).

Patterns of one run resemble their neighbours (same cell, fluid, texture, background), and a user's
labels carry the user's conventions. An :class:`Adapter` keeps the labeled patterns' features and
labels; a new pattern's probability for each phase blends the network's (calibrated) probability
with a similarity-weighted vote of its ``k`` most similar references::

    p = w · g(s_max) · vote + (1 − w · g(s_max)) · p_network

The network's probabilities may first be recalibrated to the user's labels: per-phase logit shifts
``b`` (``p_network ← σ(logit p_network + b)``, :func:`recalibrate`), the adaptation of choice where
the labeled patterns do not repeat. ``w`` (the vote's weight) and ``k`` are chosen by leave-one-out on the labeled set
(:mod:`xrdmtl.training.adapt`); ``g`` fades the vote out for patterns less similar to every reference
than the labeled patterns are to each other (``gate``), so a pattern of a stage nobody labeled is left
to the network. ``w = 0`` is the network alone. A reference's label that the physics audit
contradicts may be left out of its phase's vote while the reference still votes on the others
(``Adapter.voting``); ``s_max`` and the vote are then per phase.

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
    similarity: np.ndarray, labels: np.ndarray, k: int, voting: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-phase vote ``(B, T)`` in [0, 1] of the ``k`` most similar references, weighted by
    ``exp((s - s_max) / SIMILARITY_SCALE)``, and the similarity of each phase's nearest voting
    reference ``(B, T)``.

    ``similarity: (B, R)``, ``-inf`` where a reference may not vote; ``labels: (R, T)``;
    ``voting: (R, T)`` bool, False where a reference's label of that phase may not vote (each phase
    then takes its ``k`` nearest among the references whose label of it votes)."""
    n_refs = labels.shape[0]
    if voting is None or np.all(voting):  # one neighbour set for every phase
        s = similarity[:, :, None]
    else:
        s = np.where(np.asarray(voting, bool)[None], similarity[:, :, None], -np.inf)
    k = max(1, min(int(k), n_refs))
    if k < n_refs:
        idx = np.argpartition(-s, k - 1, axis=1)[:, :k]
    else:
        idx = np.broadcast_to(np.arange(k)[None, :, None], s.shape)
    near = np.take_along_axis(s, idx, axis=1)  # (B, k, T or 1)
    s_max = near.max(axis=1)
    with np.errstate(invalid="ignore"):
        weights = np.exp((near - s_max[:, None]) / SIMILARITY_SCALE)
    weights = np.where(np.isfinite(near), weights, 0.0)
    table = labels.astype(np.float64)
    votes = table[idx[..., 0]] if s.shape[2] == 1 else np.take_along_axis(table[None], idx, axis=1)
    total = np.maximum(weights.sum(axis=1), 1e-30)
    vote = (weights * votes).sum(axis=1) / total
    return vote, np.broadcast_to(s_max, vote.shape)


def recalibrate(p: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``σ(logit p + shift)``: probabilities ``p`` with per-phase logit shifts (broadcast)."""
    q = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    out: np.ndarray = 1.0 / (1.0 + np.exp(-(np.log(q / (1 - q)) + shift)))
    return out


def gate(s_max: np.ndarray, threshold: float) -> np.ndarray:
    """Weight in (0, 1) of a vote whose nearest reference has similarity ``s_max`` (any shape)."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-(s_max - threshold) / SIMILARITY_SCALE))


@dataclass(frozen=True)
class Adapter:
    """Reference features ``(R, G)`` and labels ``(R, T)`` with the blend chosen for them;
    ``voting`` ``(R, T)`` bool: which labels vote (None: all; a label the audit contradicts may be
    left out while the pattern still votes on its other phases); ``shift`` ``(T,)``: logit shifts of
    the network's probabilities (None: none); ``check``: the physics check decides each call with
    the adapted probabilities (True), or only reports where it disagrees (False: chosen where the
    user's labels follow a convention the physics does not bear out, ``training.adapt``)."""

    features: np.ndarray
    labels: np.ndarray
    weight: float
    k: int
    threshold: float
    voting: np.ndarray | None = None
    shift: np.ndarray | None = None
    check: bool = True

    def __post_init__(self) -> None:
        voting = np.ones(self.labels.shape, bool) if self.voting is None else self.voting
        object.__setattr__(self, "voting", np.asarray(voting, bool))
        shift = np.zeros(self.labels.shape[1]) if self.shift is None else self.shift
        object.__setattr__(self, "shift", np.asarray(shift, np.float64).reshape(-1))
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
        if self.votes.shape != self.labels.shape:
            raise ModelError(
                f"adapter voting mask {self.votes.shape} does not match its labels {self.labels.shape}"
            )
        if self.shifts.shape != (self.labels.shape[1],) or not np.isfinite(self.shifts).all():
            raise ModelError(f"adapter logit shifts {self.shifts.shape} do not match its labels")
        if not 0.0 <= self.weight <= 1.0 or self.k < 1 or not np.isfinite(self.threshold):
            raise ModelError(
                f"bad adapter settings: weight {self.weight}, k {self.k}, gate {self.threshold}"
            )

    @property
    def votes(self) -> np.ndarray:
        """Which labels vote, ``(R, T)`` bool."""
        assert self.voting is not None  # set by __post_init__
        return self.voting

    @property
    def shifts(self) -> np.ndarray:
        """Per-phase logit shifts of the network's probabilities ``(T,)``."""
        assert self.shift is not None  # set by __post_init__
        return self.shift

    def with_references(self, features: np.ndarray, labels: np.ndarray) -> Adapter:
        """The same blend with more references (e.g. confidently labeled patterns of the run),
        every label of which votes."""
        labels = np.asarray(labels, np.uint8)
        return replace(
            self,
            features=np.concatenate([self.features, np.asarray(features, np.float32)]),
            labels=np.concatenate([self.labels, labels]),
            voting=np.concatenate([self.votes, np.ones(labels.shape, bool)]),
        )

    def combine(self, x: np.ndarray, p_network: np.ndarray) -> np.ndarray:
        """Probabilities ``(B, T)``: the network's ``p_network`` blended with the references' vote
        for model input ``x: (B, C, G)``."""
        if self.weight == 0.0 and not self.shifts.any():
            return p_network
        return self.combine_features(reference_features(x), p_network)

    def combine_features(self, f: np.ndarray, p_network: np.ndarray) -> np.ndarray:
        """:meth:`combine` for unit-norm features ``f: (B, G)`` (:func:`reference_features`)."""
        p = np.asarray(p_network, np.float64)
        if self.shifts.any():
            p = recalibrate(p, self.shifts)
        if self.weight == 0.0:
            return p.astype(p_network.dtype)
        if f.shape[1] != self.features.shape[1]:
            raise ModelError(
                f"input has {f.shape[1]} grid points, the adapter's references {self.features.shape[1]}"
            )
        vote, s_max = neighbour_vote(f @ self.features.T, self.labels, self.k, self.votes)
        w = self.weight * gate(s_max, self.threshold)
        blended: np.ndarray = w * vote + (1.0 - w) * p
        return blended.astype(p_network.dtype)

    def settings(self, file: str) -> dict[str, Any]:
        """The JSON part of the adapter (``model.json['adapter']``); the arrays go to ``file``."""
        return {
            "feature": FEATURE,
            "file": file,
            "n_references": int(len(self.labels)),
            "n_labels_left_out": int((~self.votes).sum()),
            "weight": float(self.weight),
            "k": int(self.k),
            "gate": float(self.threshold),
            "similarity_scale": SIMILARITY_SCALE,
            "logit_shifts": [float(v) for v in self.shifts],
            "check": bool(self.check),
        }

    def tensors(self) -> dict[str, np.ndarray]:
        """The arrays to store (safetensors)."""
        return {
            "features": np.ascontiguousarray(self.features, np.float32),
            "labels": np.ascontiguousarray(self.labels, np.uint8),
            "voting": np.ascontiguousarray(self.votes, np.uint8),
            "shift": np.ascontiguousarray(self.shifts, np.float64),
        }


def check_decides(adapter: Adapter | None) -> bool:
    """Whether the physics check decides a model's calls with its probabilities: always without
    an adapter, and with one unless its adaptation chose to let the check only report."""
    return adapter is None or adapter.check


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ModelError(f"adapter setting {name!r} must be true or false, got {value!r}")
    return value


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
            arrays["voting"].astype(bool) if "voting" in arrays else None,  # older: every label
            arrays["shift"].astype(np.float64) if "shift" in arrays else None,  # older: none
            _flag(settings.get("check", True), "check"),  # older: the check decides
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
