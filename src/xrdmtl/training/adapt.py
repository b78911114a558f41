"""Choose an :class:`~xrdmtl.model.adapter.Adapter` for a user's labeled patterns, never worse than
the network on the user's own evidence.

1. **Regime** (:func:`label_regime`): do the labeled patterns repeat (a run whose stages recur: a
   pattern's nearest neighbour carries its labels far more often than chance) or are they independent
   draws (a new beamline, a survey)? Cohen's kappa of nearest-neighbour label agreement decides.
2. **Candidates**, each scored by leave-one-out over the labeled patterns (each pattern predicted
   from the network and the *other* labels): the network alone (the null), the network with its
   per-phase logits shifted to the user's labels (recalibrated), and, where the patterns repeat,
   blends of the network with a vote of the most similar labeled patterns (the vote's weight ``w``,
   its ``k`` neighbours, and whether labels the physics audit contradicts vote, leave the vote alone,
   or take their whole patterns with them). Given the physics check of the labeled patterns
   (``check``), each is scored as it will predict (:func:`with_check`): the network keeps the
   check deciding; a vote lets it decide only where that wins more patterns than it loses.
3. **Safe choice** (:func:`clearly_better`): a candidate replaces the network only where it beats it
   clearly on a proper score *and* on exact match: its per-pattern Brier scores lower by
   ``z_brier`` paired standard errors, and its exact-match wins outnumber its losses by ``z_exact``
   standard deviations of a sign test. Both margins grow as the labels thin. Among those that pass,
   the lowest Brier score wins; where none passes, the network stays as it is.
4. **Honest estimate** (:func:`nested_estimate`): the whole procedure (regime, candidates, choice) is
   repeated with each labeled pattern held out and that pattern predicted by what was chosen without
   it, so the figure the user sees is not flattered by the choice. Where it falls below the
   network's own score, the network stays (``overruled``).

What each rule measured is in ``docs/adapt.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, LabelsError
from ..model.adapter import (
    Adapter,
    check_decides,
    gate,
    neighbour_vote,
    recalibrate,
    reference_features,
)

POLICIES = ("auto", "drop", "drop-labels", "keep")
LEFT_OUT = {  # what each policy leaves out of the vote
    "keep": "all labels",
    "drop": "patterns with a contradicted label left out",
    "drop-labels": "contradicted labels left out",
}
KINDS = ("network", "recalibrated", "vote")
Check = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""The physics check as adaptation sees it: the final probabilities for probabilities ``p (n, T)``
of the patterns ``rows`` (``inference.verify.Verdicts``, precomputed by the workflow)."""


@dataclass(frozen=True)
class AdaptConfig:
    """The candidates tried and the margins a candidate must clear to replace the network.

    ``contradicted``: ``drop`` leaves references with a label the audit contradicts out of the vote,
    ``drop-labels`` only those labels (the reference still votes on its other phases), ``keep`` lets
    them vote, ``auto`` chooses by leave-one-out."""

    weights: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    ks: tuple[int, ...] = (1, 3)
    contradicted: str = "auto"
    gate_percentile: float = 5.0  # of the labeled patterns' nearest-neighbour similarities …
    gate_margin: float = 0.05  # … less this: below it the vote fades out
    z_brier: float = 2.0  # paired standard errors by which the Brier score must beat the network's
    z_exact: float = 1.0  # sign-test deviations by which exact-match wins must outnumber losses
    z_repeat: float = 0.0  # the Brier margin where the labeled patterns repeat (the vote has shown
    # its worth there already: a nearest neighbour's labels agree far more often than chance)
    repeat_kappa: float = 0.4  # nearest-neighbour label agreement (kappa) of a run that repeats …
    repeat_slack: float = 0.15  # … no further than this below the network's exact match
    recalibrate: bool = True  # try the network with per-phase logit shifts
    shift_prior: float = 2.0  # ridge on those shifts (pseudo-patterns' worth of curvature)

    def __post_init__(self) -> None:
        """Check the candidates (a ConfigError names the first setting that cannot work)."""
        if self.contradicted not in POLICIES:
            raise ConfigError(
                f"contradicted must be one of {', '.join(POLICIES)}, got {self.contradicted!r}"
            )
        if not self.weights or not all(0.0 < w <= 1.0 for w in self.weights):
            raise ConfigError("vote weights must lie in (0, 1] (the network alone is always tried)")
        if not self.ks or min(self.ks) < 1:
            raise ConfigError("ks must be positive")
        margins = (self.z_brier, self.z_exact, self.z_repeat, self.shift_prior)
        if min(margins) < 0 or not 0 <= self.repeat_kappa <= 1:
            raise ConfigError("margins and priors must be non-negative, repeat_kappa in [0, 1]")


@dataclass(frozen=True)
class Candidate:
    """One way to predict and its leave-one-out scores over the labeled patterns."""

    kind: str  # one of KINDS
    weight: float
    k: int
    policy: str  # of contradicted labels: a key of LEFT_OUT
    exact: float
    brier: float
    shift: tuple[float, ...] = ()  # per-phase logit shifts (recalibrated), fitted to all labels
    brier_rows: tuple[float, ...] = field(default=(), repr=False, compare=False)  # per pattern
    exact_rows: tuple[bool, ...] = field(default=(), repr=False, compare=False)
    checked: bool | None = None  # the physics check decides with it (None: no check was given)
    probs: np.ndarray | None = field(default=None, repr=False, compare=False)  # (N, T) out of fold

    def describe(self) -> str:
        return self._what() + (", the physics check only reports" if self.checked is False else "")

    def _what(self) -> str:
        if self.kind == "network":
            return "network with the physics check" if self.checked else "network alone"
        if self.kind == "recalibrated":
            return (
                "network recalibrated (logit shifts "
                + ", ".join(f"{s:+.2f}" for s in self.shift)
                + ")"
            )
        return f"vote weight {self.weight:g}, k = {self.k}, {LEFT_OUT[self.policy]}"


@dataclass(frozen=True)
class Regime:
    """Whether the labeled patterns repeat: nearest-neighbour label agreement against chance."""

    agreement: float  # share of patterns whose nearest neighbour has every label the same
    chance: float  # the same for a random other pattern
    kappa: float  # (agreement − chance) / (1 − chance)
    network: float  # the network's exact match on the same labels
    repeats: bool

    def describe(self) -> str:
        what = "repeat (a run whose stages recur)" if self.repeats else "are independent"
        return (
            f"the labeled patterns {what}: a nearest neighbour shares every label in "
            f"{self.agreement:.0%} (chance {self.chance:.0%}, kappa {self.kappa:.2f}; the network "
            f"is right on {self.network:.0%})"
        )


@dataclass(frozen=True)
class Estimate:
    """Exact match of the whole procedure on patterns it did not choose on (nested leave-one-out)."""

    exact: float
    se: float  # binomial standard error
    n: int
    kinds: dict[str, int]  # how often each kind was chosen without the held-out pattern

    @classmethod
    def of(cls, right: np.ndarray, kinds: dict[str, int]) -> Estimate:
        """The estimate from one bool per held-out pattern."""
        exact = float(np.mean(right))
        return cls(exact, float(np.sqrt(exact * (1 - exact) / len(right))), len(right), kinds)

    def describe(self) -> str:
        return f"{self.exact:.1%} ± {self.se:.1%} (nested leave-one-out over {self.n} labels)"


@dataclass(frozen=True)
class AdaptResult:
    """The adapter fitted to every usable reference, the winning candidate and all candidates."""

    adapter: Adapter
    chosen: Candidate
    candidates: list[Candidate]
    regime: Regime
    network: Candidate  # the null every candidate was measured against
    estimate: Estimate | None = None
    left_out: list[int] = field(default_factory=list)  # indices of references not in the adapter
    # (reference, phase) indices of labels left out of the vote while their reference votes
    labels_left_out: list[tuple[int, int]] = field(default_factory=list)
    keep_would: Candidate | None = None  # the best vote with every label voting (policy "keep")
    overruled: Candidate | None = None  # leave-one-out's choice, not above the network when nested
    overruled_by: Estimate | None = None  # that choice's nested estimate


# ------------------------------------------------------------------ scores and the safe choice


def _candidate(
    kind: str,
    p: np.ndarray,
    labels: np.ndarray,
    thresholds: np.ndarray,
    weight: float = 0.0,
    k: int = 1,
    policy: str = "keep",
    shift: tuple[float, ...] = (),
) -> Candidate:
    """The candidate that predicts ``p`` for the labeled patterns, with its scores."""
    right = ((p > thresholds) == labels.astype(bool)).all(axis=1)
    rows = ((p - labels) ** 2).mean(axis=1)
    return Candidate(
        kind, weight, k, policy, float(right.mean()), float(rows.mean()), shift,
        tuple(map(float, rows)), tuple(map(bool, right)), probs=np.asarray(p, np.float64),
    )  # fmt: skip


@dataclass(frozen=True)
class Margin:
    """How clearly a candidate must beat the network: ``z_brier`` paired standard errors of the
    Brier difference, and exact-match wins − losses ≥ ``z_exact · √(wins + losses)`` and ≥
    ``min_net`` (a sign test). Standard errors grow as the labels thin, and the margins with them."""

    z_brier: float
    z_exact: float
    min_net: int


def margin_for(config: AdaptConfig, repeats: bool) -> Margin:
    """Independent patterns: the network must be beaten on both measures (``z_brier``,
    ``z_exact``). Patterns that repeat: a Brier score lower by ``z_repeat`` standard errors with no
    more exact-match losses than wins (leave-one-out takes a stage's only other labeled pattern
    away from the vote, so with a few labels a right vote often shows as a tie)."""
    if repeats:
        return Margin(config.z_repeat, 0.0, 0)
    return Margin(config.z_brier, config.z_exact, 1)


def clearly_better(c: Candidate, null: Candidate, margin: Margin) -> bool:
    """Does ``c`` beat ``null`` on the same patterns by more than ``margin``?"""
    d = np.asarray(c.brier_rows) - np.asarray(null.brier_rows)
    if len(d) < 2:
        return False
    se = float(d.std(ddof=1) / np.sqrt(len(d)))
    a, b = np.asarray(c.exact_rows, bool), np.asarray(null.exact_rows, bool)
    wins, losses = int((a & ~b).sum()), int((~a & b).sum())
    net = wins - losses
    exact_ok = net >= margin.min_net and net >= margin.z_exact * np.sqrt(wins + losses)
    return bool(d.mean() < -margin.z_brier * se - 1e-12 and exact_ok)


LEAN = 2.0  # standard errors of the Brier difference within which more vote weight is preferred


def choose(
    candidates: Sequence[Candidate], null: Candidate, config: AdaptConfig, repeats: bool = False
) -> Candidate:
    """The network unless a candidate is :func:`clearly_better`; among those that are, the lowest
    Brier score. Where the patterns repeat, the candidate with the most vote weight within
    :data:`LEAN` paired standard errors of that one instead: leave-one-out holds one reference
    fewer than the adapted model will have, which costs the vote most where a stage has few
    labeled patterns (on the paper's run, N = 10 masked, before the nested guard: 83.7 % without
    the lean, 86.8 % with it)."""
    margin = margin_for(config, repeats)
    passed = [c for c in candidates if c is not null and clearly_better(c, null, margin)]
    if not passed:
        return null
    best = min(passed, key=lambda c: c.brier)
    if not repeats:
        return best
    ref = np.asarray(best.brier_rows)
    close = [best]
    for c in candidates:
        d = np.asarray(c.brier_rows) - ref
        if d.mean() <= LEAN * float(d.std(ddof=1) / np.sqrt(len(d))) + 1e-12:
            close.append(c)
    return max(close, key=lambda c: (c.weight, -c.brier))


def with_check(
    c: Candidate, labels: np.ndarray, thresholds: np.ndarray, check: Check, rows: np.ndarray
) -> Candidate:
    """``c`` as it will predict with the physics check. The network alone or recalibrated keeps
    the check deciding, as the shipped model does: a few labels do not outweigh the families it
    was validated on (letting them switch it off cost a draw of 20 labels 1.3 points on new
    patterns, ``docs/adapt.md``). A vote follows the user's labels, which may keep a convention the
    physics does not bear out (a run's stage labels against a gasket the pattern shows): there the
    check only reports unless deciding with it wins more leave-one-out patterns than it loses."""
    assert c.probs is not None
    decided = _candidate(
        c.kind, check(c.probs, rows), labels, thresholds, c.weight, c.k, c.policy, c.shift
    )
    decides = c.kind != "vote"
    if not decides:
        a, b = np.asarray(decided.exact_rows, bool), np.asarray(c.exact_rows, bool)
        decides = int((a & ~b).sum()) > int((~a & b).sum())
    return dataclasses.replace(decided if decides else c, checked=decides)


# ------------------------------------------------------------------ the regime


def label_regime(
    similarity: np.ndarray,
    labels: np.ndarray,
    network: Candidate,
    votes: Sequence[Candidate],
    config: AdaptConfig,
) -> Regime:
    """Do the labeled patterns repeat? Their nearest-neighbour label agreement (unit-norm
    ``similarity (N, N)`` of their features) is well above chance (Cohen's kappa ≥ ``repeat_kappa``; chance: the share
    of ordered pairs of distinct patterns with the same labels), and the labels follow the
    neighbours about as well as the ``network`` predicts them: the agreement is at most
    ``repeat_slack`` below its exact match, or a vote blend of ``votes`` has a lower leave-one-out
    Brier score. Independent draws of a simulator agree with their nearest neighbour 30–80
    points below the network; a run's stages within a few points of it or above (``docs/adapt.md``)."""
    n = len(labels)
    nearest = _loo_similarity(similarity, np.ones(n, bool)).argmax(axis=1)
    agreement = float((labels == labels[nearest]).all(axis=1).mean())
    _, counts = np.unique(labels, axis=0, return_counts=True)
    chance = float((counts * (counts - 1)).sum() / (n * (n - 1)))
    kappa = 1.0 if chance >= 1.0 else (agreement - chance) / (1.0 - chance)
    follows = agreement >= network.exact - config.repeat_slack or any(
        clearly_better(v, network, Margin(config.z_brier, 0.0, 0)) for v in votes
    )
    repeats = kappa >= config.repeat_kappa and follows
    return Regime(agreement, chance, float(kappa), network.exact, bool(repeats))


# ------------------------------------------------------------------ the candidates


def _gate_threshold(similarity: np.ndarray, config: AdaptConfig) -> float:
    nearest = similarity.max(axis=1)
    nearest = nearest[np.isfinite(nearest)]
    if nearest.size == 0:
        return 1.0
    return float(np.percentile(nearest, config.gate_percentile) - config.gate_margin)


def _loo_similarity(similarity: np.ndarray, voters: np.ndarray) -> np.ndarray:
    """``similarity`` with each pattern's own entry and the columns of non-voters at ``-inf``."""
    out = np.array(similarity, copy=True)
    np.fill_diagonal(out, -np.inf)
    out[:, ~voters] = -np.inf
    return out


def score_votes(
    similarity: np.ndarray,
    labels: np.ndarray,
    p_network: np.ndarray,
    thresholds: np.ndarray,
    voting: np.ndarray,
    policy: str,
    config: AdaptConfig,
) -> tuple[list[Candidate], float]:
    """Leave-one-out scores of every vote blend (weight, k) with the labels ``voting`` ``(N, T)``,
    and the gate threshold; ``similarity (N, N)``: of the patterns' features."""
    similarity = _loo_similarity(similarity, np.asarray(voting.any(axis=1), bool))
    threshold = _gate_threshold(similarity, config)
    out = []
    for k in config.ks:
        vote, s_max = neighbour_vote(similarity, labels, k, voting)
        g = gate(s_max, threshold)
        for weight in config.weights:
            w = weight * g
            p = w * vote + (1.0 - w) * p_network
            out.append(
                _candidate(
                    "vote", p, labels, thresholds, weight=float(weight), k=int(k), policy=policy
                )
            )
    return out, threshold


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, np.float64), 1e-4, 1 - 1e-4)
    out: np.ndarray = np.log(q / (1 - q))
    return out


def fit_shifts(p_network: np.ndarray, labels: np.ndarray, prior: float) -> np.ndarray:
    """Per-phase logit shifts ``(T,)`` that fit ``labels`` best: the logistic likelihood with a ridge
    ``prior``, by Newton's method."""
    z, y = _logit(p_network), np.asarray(labels, np.float64)
    b = np.zeros(z.shape[1])
    for _ in range(25):
        s = 1.0 / (1.0 + np.exp(-(z + b)))
        step = ((s - y).sum(axis=0) + prior * b) / ((s * (1 - s)).sum(axis=0) + prior)
        b = b - np.clip(step, -2.0, 2.0)
    return b


def score_recalibrated(
    p_network: np.ndarray, labels: np.ndarray, thresholds: np.ndarray, config: AdaptConfig
) -> Candidate:
    """Leave-one-out score of the network with logit shifts fitted to the other labels (each fold's
    shifts one Newton step from the shifts fitted to all, which is where that step starts)."""
    shift = fit_shifts(p_network, labels, config.shift_prior)
    z, y = _logit(p_network), np.asarray(labels, np.float64)
    s = 1.0 / (1.0 + np.exp(-(z + shift)))
    curvature = (s * (1 - s)).sum(axis=0) + config.shift_prior
    folds = shift + (s - y) / np.maximum(curvature - s * (1 - s), 1e-9)  # (N, T): without each
    p = recalibrate(p_network, folds)
    return _candidate(
        "recalibrated", p, labels, thresholds, weight=0.0, k=1, policy="keep",
        shift=tuple(map(float, shift)),
    )  # fmt: skip


# ------------------------------------------------------------------ one choice on arrays


@dataclass(frozen=True)
class _Choice:
    chosen: Candidate
    null: Candidate
    candidates: list[Candidate]
    regime: Regime
    gates: dict[str, float]
    voting_for: dict[str, np.ndarray]
    overruled: Candidate | None = None  # chosen by leave-one-out, not borne out by the nested one


def _voting_for(
    labels: np.ndarray, flags: np.ndarray, config: AdaptConfig
) -> dict[str, np.ndarray]:
    """The labels that vote under each policy worth scoring (policies that differ)."""
    flagged = np.asarray(flags.any(axis=1), bool)
    everything = {
        "keep": np.ones(labels.shape, bool),
        "drop": np.repeat(~flagged[:, None], labels.shape[1], axis=1),
        "drop-labels": ~flags,
    }
    policies = {"auto": ("keep", "drop", "drop-labels")}.get(
        config.contradicted, (config.contradicted,)
    )
    if not flagged.any() or flagged.sum() >= len(labels) - 1:
        policies = ("keep",)
    out: dict[str, np.ndarray] = {}
    for p in policies:
        if not any(np.array_equal(everything[p], v) for v in out.values()):
            out[p] = everything[p]
    return out


def _select(
    similarity: np.ndarray,
    labels: np.ndarray,
    p_network: np.ndarray,
    thresholds: np.ndarray,
    flags: np.ndarray,
    config: AdaptConfig,
    check: Check | None = None,
    rows: np.ndarray | None = None,
) -> _Choice:
    """The choice among the candidates; with a ``check`` (for the labeled patterns ``rows`` of
    its patterns), each candidate is scored as it will predict (:func:`with_check`)."""
    null = _candidate("network", p_network, labels, thresholds, weight=0.0, k=1, policy="keep")
    candidates = [null]
    if config.recalibrate:
        candidates.append(score_recalibrated(p_network, labels, thresholds, config))
    voting_for = _voting_for(labels, flags, config)
    gates: dict[str, float] = {}
    for policy, voting in voting_for.items():
        scored, gates[policy] = score_votes(
            similarity, labels, p_network, thresholds, voting, policy, config
        )
        candidates += scored
    votes = [c for c in candidates if c.kind == "vote"]
    regime = label_regime(similarity, labels, null, votes, config)
    if check is not None:  # every candidate as it will predict
        at = np.arange(len(labels)) if rows is None else rows
        candidates = [with_check(c, labels, thresholds, check, at) for c in candidates]
        null = candidates[0]
    chosen = choose(candidates, null, config, regime.repeats)
    return _Choice(chosen, null, candidates, regime, gates, voting_for)


def _adapter_for(
    choice: _Choice, features: np.ndarray, labels: np.ndarray
) -> tuple[Adapter, np.ndarray]:
    """The adapter the choice describes over these references, and which references it keeps."""
    c = choice.chosen
    shift = np.asarray(c.shift, np.float64) if c.kind == "recalibrated" else None
    check = c.checked is not False
    if c.kind != "vote":
        keep = np.ones(len(labels), bool)
        return Adapter(features, labels, 0.0, 1, 1.0, None, shift, check), keep
    voting = choice.voting_for[c.policy]
    keep = np.asarray(voting.any(axis=1), bool)
    adapter = Adapter(
        features[keep], labels[keep], c.weight, c.k, choice.gates[c.policy], voting[keep],
        check=check,
    )  # fmt: skip
    return adapter, keep


def nested_estimate(
    features: np.ndarray,
    labels: np.ndarray,
    p_network: np.ndarray,
    thresholds: np.ndarray,
    flags: np.ndarray,
    config: AdaptConfig,
    similarity: np.ndarray | None = None,
    check: Check | None = None,
) -> Estimate:
    """Exact match of the whole choice on each labeled pattern when it was made without that
    pattern (``similarity``: ``features @ features.T`` where the caller has it; ``check``: the
    physics check of the labeled patterns, whose part in the prediction is chosen too)."""
    n = len(labels)
    similarity = features @ features.T if similarity is None else similarity
    right = np.zeros(n, bool)
    kinds = dict.fromkeys(KINDS, 0)
    for i in range(n):  # the choice itself is cross-validated: one choice per held-out pattern
        rest = np.arange(n) != i
        sub = similarity[np.ix_(rest, rest)]
        choice = _select(
            sub, labels[rest], p_network[rest], thresholds, flags[rest], config, check,
            np.flatnonzero(rest),
        )  # fmt: skip
        kinds[choice.chosen.kind] += 1
        adapter, _ = _adapter_for(choice, features[rest], labels[rest])
        p = adapter.combine_features(features[i : i + 1], p_network[i : i + 1])
        if check is not None and check_decides(adapter):
            p = check(p, np.array([i]))
        right[i] = bool(((p > thresholds) == labels[i : i + 1].astype(bool)).all())
    return Estimate.of(right, kinds)


def fit_adapter(
    x: np.ndarray,
    labels: np.ndarray,
    p_network: np.ndarray,
    thresholds: Sequence[float] | np.ndarray,
    contradicted: np.ndarray | None = None,
    config: AdaptConfig | None = None,
    estimate: bool = True,
    check: Check | None = None,
) -> AdaptResult:
    """Choose and fit the adapter for labeled patterns.

    ``x``: their model input ``(N, C, G)``; ``labels``: ``(N, T)`` 0/1; ``p_network``: the network's
    calibrated probabilities for them ``(N, T)`` (out of sample: the network never saw these
    labels); ``contradicted``: True where the audit contradicts a label, ``(N, T)``, or ``(N,)`` for
    every label of a pattern. ``estimate``: also run :func:`nested_estimate`. ``check``: the
    physics check of these patterns; the adapter then records whether it decides with the adapted
    probabilities or only reports (:func:`with_check`), and every score is of the probabilities
    as they will be decided.
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
    features = reference_features(x)
    similarity = features @ features.T
    choice = _select(similarity, labels, p_network, thresholds, flags, config, check)
    held_out = overruled_by = None
    if estimate and n >= 3:
        held_out = nested_estimate(
            features, labels, p_network, thresholds, flags, config, similarity, check
        )
        if choice.chosen.kind != "network" and held_out.exact < choice.null.exact:
            # the choice does not hold up on patterns it was not made on: the network stays, and
            # what to expect of it is its score on these labels (which chose nothing for it)
            choice = dataclasses.replace(choice, chosen=choice.null, overruled=choice.chosen)
            overruled_by = held_out
            held_out = Estimate.of(np.asarray(choice.null.exact_rows), held_out.kinds)
    adapter, keep = _adapter_for(choice, features, labels)
    voting = choice.voting_for.get(choice.chosen.policy, np.ones(labels.shape, bool))
    abstaining = (
        [(int(i), int(j)) for i, j in np.argwhere(~voting & keep[:, None])]
        if choice.chosen.kind == "vote"
        else []
    )
    votes_keep = [c for c in choice.candidates if c.kind == "vote" and c.policy == "keep"]
    return AdaptResult(
        adapter, choice.chosen, choice.candidates, choice.regime, choice.null,
        held_out,
        [int(i) for i in np.flatnonzero(~keep)], abstaining,
        min(votes_keep, key=lambda c: c.brier) if votes_keep else None, choice.overruled,
        overruled_by,
    )  # fmt: skip


PSEUDO_CONFIDENCE = 0.9  # an unlabeled pattern joins the references when every phase is this sure


def pseudo_labeled(
    adapter: Adapter,
    x: np.ndarray,
    p_network: np.ndarray,
    thresholds: Sequence[float] | np.ndarray,
    check: Check | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unlabeled patterns of the same run as extra references: the adapted calls of those whose
    every phase probability lies beyond :data:`PSEUDO_CONFIDENCE` (or below its complement), as
    ``predict`` will make them: decided by ``check`` (the physics check of these patterns, rows
    ``0…n−1``) where the adapter lets the check decide. Returns their features, labels and the bool
    mask of the patterns taken. Nothing is taken while the vote has no weight (the network alone
    would only vote for what it already says)."""
    n = len(x)
    if adapter.weight == 0.0 or n == 0:
        features = np.zeros((0, adapter.features.shape[1]), np.float32)
        return features, np.zeros((0, adapter.labels.shape[1]), np.uint8), np.zeros(n, bool)
    p = adapter.combine(x, np.asarray(p_network, np.float32))
    if check is not None and check_decides(adapter):
        p = check(p, np.arange(n))
    sure = np.all((p >= PSEUDO_CONFIDENCE) | (p <= 1.0 - PSEUDO_CONFIDENCE), axis=1)
    calls = (p > np.asarray(thresholds)).astype(np.uint8)
    return reference_features(x[sure]), calls[sure], sure
