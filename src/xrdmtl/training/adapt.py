"""Choose an :class:`~xrdmtl.model.adapter.Adapter` for a user's labeled patterns by leave-one-out.

Every candidate blend (the vote's weight ``w``, its ``k`` neighbours, and whether labels the physics
audit contradicts vote, leave the vote alone, or take their whole patterns with them) is scored by
leave-one-out over the labeled patterns: each pattern is predicted from the network and the *other*
references. The choice (:func:`choose`) is made on the Brier score, leaning toward the vote where
the labels cannot tell it from the network; the network alone (weight 0) is one of the candidates.
This is an honest internal model selection; the figure of the winner is optimistic by the selection
itself, which ``xrdmtl crossval`` measures without bias (the whole fit inside each fold). What each rule measured is in ``docs/adapt.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, LabelsError
from ..model.adapter import Adapter, gate, neighbour_vote, reference_features

POLICIES = ("auto", "drop", "drop-labels", "keep")
LEFT_OUT = {  # what each policy leaves out of the vote
    "keep": "all labels",
    "drop": "patterns with a contradicted label left out",
    "drop-labels": "contradicted labels left out",
}


@dataclass(frozen=True)
class AdaptConfig:
    """The candidates tried. ``contradicted``: ``drop`` leaves references with a label the audit
    contradicts out of the vote, ``drop-labels`` only those labels (the reference still votes on its
    other phases), ``keep`` lets them vote, ``auto`` chooses by leave-one-out."""

    weights: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    ks: tuple[int, ...] = (1, 3)
    contradicted: str = "auto"
    gate_percentile: float = 5.0  # of the labeled patterns' nearest-neighbour similarities …
    gate_margin: float = 0.05  # … less this: below it the vote fades out

    def __post_init__(self) -> None:
        """Check the candidates (a ConfigError names the first setting that cannot work)."""
        if self.contradicted not in POLICIES:
            raise ConfigError(
                f"contradicted must be one of {', '.join(POLICIES)}, got {self.contradicted!r}"
            )
        if not self.weights or not all(0.0 <= w <= 1.0 for w in self.weights):
            raise ConfigError("weights must lie in [0, 1]")
        if not self.ks or min(self.ks) < 1:
            raise ConfigError("ks must be positive")


@dataclass(frozen=True)
class Candidate:
    """One blend and its leave-one-out scores over the labeled patterns."""

    weight: float
    k: int
    policy: str  # of contradicted labels: a key of LEFT_OUT
    exact: float
    brier: float
    brier_rows: tuple[float, ...] = field(default=(), repr=False, compare=False)  # per pattern

    def describe(self) -> str:
        if self.weight == 0.0:
            return "network alone"
        return f"vote weight {self.weight:g}, k = {self.k}, {LEFT_OUT[self.policy]}"


@dataclass(frozen=True)
class AdaptResult:
    """The adapter fitted to every usable reference, the winning candidate and all candidates."""

    adapter: Adapter
    chosen: Candidate
    candidates: list[Candidate]
    left_out: list[int] = field(default_factory=list)  # indices of references not in the adapter
    # (reference, phase) indices of labels left out of the vote while their reference votes
    labels_left_out: list[tuple[int, int]] = field(default_factory=list)


def _gate_threshold(similarity: np.ndarray, config: AdaptConfig) -> float:
    nearest = similarity.max(axis=1)
    nearest = nearest[np.isfinite(nearest)]
    if nearest.size == 0:
        return 1.0
    return float(np.percentile(nearest, config.gate_percentile) - config.gate_margin)


def _loo_similarity(features: np.ndarray, voters: np.ndarray) -> np.ndarray:
    similarity: np.ndarray = features @ features.T
    np.fill_diagonal(similarity, -np.inf)
    similarity[:, ~voters] = -np.inf
    return similarity


def score_candidates(
    features: np.ndarray,
    labels: np.ndarray,
    p_network: np.ndarray,
    thresholds: np.ndarray,
    voting: np.ndarray,
    policy: str,
    config: AdaptConfig,
) -> tuple[list[Candidate], float]:
    """Leave-one-out scores of every (weight, k) with the labels ``voting`` ``(N, T)``, and the gate."""
    similarity = _loo_similarity(features, np.asarray(voting.any(axis=1), bool))
    threshold = _gate_threshold(similarity, config)
    out = []
    for k in config.ks:
        vote, s_max = neighbour_vote(similarity, labels, k, voting)
        g = gate(s_max, threshold)
        for weight in config.weights:
            w = weight * g
            p = w * vote + (1.0 - w) * p_network
            calls = p > thresholds
            exact = float((calls == labels.astype(bool)).all(axis=1).mean())
            rows = ((p - labels) ** 2).mean(axis=1)
            out.append(
                Candidate(
                    float(weight),
                    int(k),
                    policy,
                    exact,
                    float(rows.mean()),
                    tuple(map(float, rows)),
                )
            )
    return out, threshold


PSEUDO_CONFIDENCE = 0.9  # an unlabeled pattern joins the references when every phase is this sure
LEAN = 2.0  # standard errors of the Brier difference within which the vote's weight is preferred


def choose(candidates: Sequence[Candidate]) -> Candidate:
    """The candidate with the most vote weight among those whose leave-one-out Brier score is within
    :data:`LEAN` standard errors (of the paired per-pattern difference) of the best; then the lowest
    Brier score.

    A proper score of the probabilities decides, not the count of right calls (with a few dozen
    labels one pattern more or less right is noise). It leans toward the user's labels: leave-one-out
    holds one reference fewer than the adapted model will have, which costs the vote most where a
    stage has few labeled patterns, so a vote the labels cannot tell apart from the network is kept;
    where the labels do not follow their neighbours (simulated frames: a vote scores 40 %) the
    network wins by far more than the noise."""
    best = min(candidates, key=lambda c: c.brier)
    ref = np.asarray(best.brier_rows)
    close = []
    for c in candidates:
        d = np.asarray(c.brier_rows) - ref
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
        if c is best or (len(d) and d.mean() <= LEAN * se + 1e-12):
            close.append(c)
    return max(close, key=lambda c: (c.weight, -c.brier))


def fit_adapter(
    x: np.ndarray,
    labels: np.ndarray,
    p_network: np.ndarray,
    thresholds: Sequence[float] | np.ndarray,
    contradicted: np.ndarray | None = None,
    config: AdaptConfig | None = None,
) -> AdaptResult:
    """Choose and fit the adapter for labeled patterns.

    ``x``: their model input ``(N, C, G)``; ``labels``: ``(N, T)`` 0/1; ``p_network``: the network's
    calibrated probabilities for them ``(N, T)`` (out of sample: the network never saw these
    labels); ``contradicted``: True where the audit contradicts a label, ``(N, T)``, or ``(N,)`` for
    every label of a pattern.
    """
    config = config or AdaptConfig()
    labels = np.asarray(labels, np.uint8)
    n = len(labels)
    if n < 2:
        raise LabelsError(f"adaptation needs at least 2 labeled patterns, got {n}")
    p_network = np.asarray(p_network, np.float64)
    thresholds = np.asarray(thresholds, np.float64)
    flags = np.zeros(labels.shape, bool)
    if contradicted is not None:
        c = np.asarray(contradicted, bool)
        flags[:] = c[:, None] if c.ndim == 1 else c
    flagged = np.asarray(flags.any(axis=1), bool)
    features = reference_features(x)
    voting_for = {
        "keep": np.ones(labels.shape, bool),
        "drop": np.repeat(~flagged[:, None], labels.shape[1], axis=1),
        "drop-labels": ~flags,
    }
    policies = {"auto": ("keep", "drop", "drop-labels")}.get(
        config.contradicted, (config.contradicted,)
    )
    if not flagged.any() or flagged.sum() >= n - 1:
        policies = ("keep",)
    candidates: list[Candidate] = []
    gates: dict[str, float] = {}
    for policy in policies:
        voting = voting_for[policy]
        if any(np.array_equal(voting, voting_for[p]) for p in gates):
            continue  # the same references as a policy already scored
        scored, gates[policy] = score_candidates(
            features, labels, p_network, thresholds, voting, policy, config
        )
        candidates += scored
    chosen = choose(candidates)
    voting = voting_for[chosen.policy]
    keep = np.asarray(voting.any(axis=1), bool)
    adapter = Adapter(
        features[keep], labels[keep], chosen.weight, chosen.k, gates[chosen.policy], voting[keep]
    )
    abstaining = [(int(i), int(j)) for i, j in np.argwhere(~voting & keep[:, None])]
    return AdaptResult(
        adapter, chosen, candidates, [int(i) for i in np.flatnonzero(~keep)], abstaining
    )


def pseudo_labeled(
    adapter: Adapter, x: np.ndarray, p_network: np.ndarray, thresholds: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unlabeled patterns of the same run as extra references: the adapted calls of those whose
    every phase probability lies beyond :data:`PSEUDO_CONFIDENCE` (or below its complement).
    Returns their features, labels and the bool mask of the patterns taken. Nothing is taken while
    the vote has no weight (the network alone would only vote for what it already says)."""
    n = len(x)
    if adapter.weight == 0.0 or n == 0:
        features = np.zeros((0, adapter.features.shape[1]), np.float32)
        return features, np.zeros((0, adapter.labels.shape[1]), np.uint8), np.zeros(n, bool)
    p = adapter.combine(x, np.asarray(p_network, np.float32))
    sure = np.all((p >= PSEUDO_CONFIDENCE) | (p <= 1.0 - PSEUDO_CONFIDENCE), axis=1)
    calls = (p > np.asarray(thresholds)).astype(np.uint8)
    return reference_features(x[sure]), calls[sure], sure
