"""What adapting to N of your labels buys, cross-validated on your own labeled patterns.

:func:`crossvalidate` holds out patterns, adapts the model to the others exactly as ``xrdmtl
finetune`` would (:func:`~xrdmtl.workflows.adapt.adapt_arrays`: the whole leave-one-out choice inside
each fold, so the figure is not flattered by it) and scores the held-out ones next to two baselines on
the very same patterns: the model before adaptation, and a nearest-neighbour vote over the same labels
(:func:`nearest_neighbour_vote`: each held-out pattern takes the labels of its most similar labeled
pattern). Leave-one-out (``N = all − 1``) and, for the curve, leave-k-out with N labeled patterns
drawn stratified by label combination. Splits depend only on the labels, N and the seed, so two
views of the same patterns (two CSVs listing them in one order) are split identically.

Labels are not gospel: every figure is also given on the held-out patterns whose labels the physics
audit does not contradict.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..inference.verify import Verdicts
from ..io.labels import LabeledPatterns
from ..io.read import ReadOptions
from ..training.adapt import AdaptConfig
from .adapt import NetworkTuning, Unlabeled, adapt_arrays, predicted_proba, read_and_audit


def strata_of(labels: np.ndarray) -> list[str]:
    """One stratum per label combination (``"110"`` = first two phases present)."""
    return ["".join(str(int(v)) for v in row) for row in np.asarray(labels)]


def training_draw(labels: np.ndarray, n: int, seed: int, split: int) -> np.ndarray:
    """The one cross-validation split: indices of the ``n`` labeled patterns that split ``split`` of
    ``seed`` trains on (stratified by label combination, :func:`stratified_split`), the same draw
    wherever it is made (``crossval`` and the experiment's measured-pattern comparison alike)."""
    return stratified_split(strata_of(labels), n, np.random.default_rng([seed, split, n, 29]))


def stratified_split(strata: Sequence[str], n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` items drawn so each stratum is represented in proportion to its size (at
    least one of each stratum while ``n`` allows, largest remainders first), sorted."""
    groups, take = _quotas(strata, n)
    picked = [int(i) for key, t in take.items() for i in rng.permutation(groups[key])[:t]]
    return np.sort(np.array(picked, dtype=int))


def distinct_splits(labels: np.ndarray, n: int) -> int:
    """How many different draws of ``n`` patterns :func:`training_draw` can make (the product over
    strata of the ways to pick each stratum's share)."""
    groups, take = _quotas(strata_of(labels), n)
    return math.prod(math.comb(len(groups[k]), t) for k, t in take.items())


def _quotas(strata: Sequence[str], n: int) -> tuple[dict[str, list[int]], dict[str, int]]:
    """The items of each stratum and how many of them a stratified draw of ``n`` takes."""
    strata = list(strata)
    if not 0 < n < len(strata):
        raise ValueError(f"N must lie between 1 and {len(strata) - 1}, got {n}")
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(strata):
        groups.setdefault(s, []).append(i)
    keys = sorted(groups, key=lambda k: (-len(groups[k]), k))
    sizes = np.array([len(groups[k]) for k in keys], dtype=float)
    quota = n * sizes / sizes.sum()
    take = np.floor(quota).astype(int)
    if n >= len(keys):  # every stratum at least once
        take = np.maximum(take, 1)
    while take.sum() > n:  # trim the strata most above their quota
        j = int(np.argmax(np.where(take > 1, take - quota, -np.inf)))
        take[j] -= 1
    order = np.argsort(-(quota - take), kind="stable")  # largest remainders first
    k = 0
    while take.sum() < n:
        j = order[k % len(keys)]
        if take[j] < sizes[j]:
            take[j] += 1
        k += 1
    return groups, {key: int(t) for key, t in zip(keys, take, strict=True)}


ROWS = ("default model", "nearest-neighbour vote", "adapted")
VOTE_WINDOW = 61  # grid points: the vote's rolling-minimum background (≈ 0.6° 2θ at 0.56 Å)


def vote_features(intensity: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """The vote's view of patterns on one grid ``(N, G)``: the intensity less a smoothed rolling
    minimum, min–max normalised over the covered points, L2-normalised (for cosine similarity)."""
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    from ..physics.background import fill_uncovered

    filled = fill_uncovered(np.asarray(intensity, np.float64), np.asarray(coverage, bool))
    background = uniform_filter1d(
        minimum_filter1d(filled, VOTE_WINDOW, axis=1, mode="nearest"),
        VOTE_WINDOW,
        axis=1,
        mode="nearest",
    )
    v = np.where(coverage, filled - background, np.nan)
    lo, hi = np.nanmin(v, axis=1, keepdims=True), np.nanmax(v, axis=1, keepdims=True)
    v = np.nan_to_num((v - lo) / np.maximum(hi - lo, 1e-12))
    out: np.ndarray = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return out


def nearest_neighbour_vote(
    train: np.ndarray, train_labels: np.ndarray, test: np.ndarray
) -> np.ndarray:
    """The labels ``(M, T)`` of each test pattern's most similar training pattern (cosine of
    :func:`vote_features`)."""
    votes: np.ndarray = np.asarray(train_labels)[np.argmax(test @ train.T, axis=1)]
    return votes


@dataclass
class Scheme:
    """Exact matches of one hold-out scheme (leave-one-out, or N labeled per split): per row, one
    value per split, over all held-out patterns and over the uncontradicted ones."""

    n_labeled: int
    leave_one_out: bool
    exact: dict[str, list[float]] = field(default_factory=lambda: {r: [] for r in ROWS})
    exact_uncontradicted: dict[str, list[float]] = field(
        default_factory=lambda: {r: [] for r in ROWS}
    )
    held_out: int = 0  # held-out predictions scored, over all splits
    wrong: dict[str, list[str]] = field(default_factory=lambda: {r: [] for r in ROWS})
    chosen: list[str] = field(default_factory=list)  # the adapter's choice in each split
    seconds: float = 0.0

    def pooled(self, row: str, clean: bool = False) -> float:
        """Leave-one-out: the exact match over all held-out patterns; leave-k-out: the mean over splits."""
        values = (self.exact_uncontradicted if clean else self.exact)[row]
        return float(np.mean(values)) if values else float("nan")

    def spread(self, row: str, clean: bool = False) -> float:
        values = (self.exact_uncontradicted if clean else self.exact)[row]
        return float(np.std(values, ddof=1)) if len(values) > 1 and not self.leave_one_out else 0.0


@dataclass
class CrossvalResult:
    """Every scheme's scores for one labels CSV."""

    labels_csv: str
    files: list[str]
    flagged: list[str]
    schemes: list[Scheme] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels_csv": self.labels_csv,
            "n_patterns": len(self.files),
            "flagged_by_audit": self.flagged,
            "schemes": [
                {
                    "n_labeled": s.n_labeled,
                    "leave_one_out": s.leave_one_out,
                    "held_out": s.held_out,
                    **{
                        row: {
                            "exact": s.pooled(row),
                            "sd": s.spread(row),
                            "exact_uncontradicted": s.pooled(row, True),
                            "sd_uncontradicted": s.spread(row, True),
                            "wrong": s.wrong[row],
                        }
                        for row in ROWS
                    },
                    "chosen": s.chosen,
                    "seconds": round(s.seconds, 1),
                }  # fmt: skip
                for s in self.schemes
            ],
        }


def _score(calls: np.ndarray, labels: np.ndarray, keep: np.ndarray) -> tuple[float, float | None]:
    right = (np.asarray(calls, bool) == labels.astype(bool)).all(axis=1)
    return float(right.mean()), (float(right[keep].mean()) if keep.any() else None)


@dataclass(frozen=True)
class CrossvalPlan:
    """Which hold-outs: leave-one-out (``leave_one_out``) and, for each N in ``ns``, ``splits``
    stratified draws of N labeled patterns (:func:`training_draw` with ``seed``). ``transductive``:
    the held-out patterns are also given as unlabeled patterns of the run (``finetune --unlabeled``)."""

    ns: tuple[int, ...] = ()
    splits: int = 5
    seed: int = 0
    leave_one_out: bool = True
    transductive: bool = False
    default_ns: bool = False  # ns are the default curve: those the labels cannot split are dropped


def crossvalidate(
    model: str | Path,
    data: LabeledPatterns,
    files: Sequence[str],
    contradicted: np.ndarray | None = None,
    plan: CrossvalPlan | None = None,
    config: AdaptConfig | None = None,
    tuning: NetworkTuning | None = None,
    note: Callable[[str], None] | None = None,
    verdicts: Verdicts | None = None,
) -> CrossvalResult:
    """Every hold-out of ``plan``, each held-out set scored by the model before adaptation, the
    nearest-neighbour vote and the adapted model (``config``, ``tuning``: as ``finetune``'s).
    ``contradicted``: the audit's verdicts, ``(N, T)`` per label or ``(N,)`` per pattern; held-out
    patterns without one are also scored alone (*uncontradicted*). ``verdicts``: the physics
    check of the patterns; the model and the adapted models then decide as ``predict`` does
    (None: the networks alone)."""
    from ..model.files import load_model
    from ..model.preprocess import model_input

    plan = plan or CrossvalPlan()
    labels = np.asarray(data.labels, np.uint8)
    n = len(labels)
    flags = np.zeros(n, bool) if contradicted is None else np.asarray(contradicted, bool)
    bad = np.asarray(flags.any(axis=1) if flags.ndim == 2 else flags, bool)
    base = dataclasses.replace(load_model(model, device="cpu"), adapter=None)  # the network
    x = model_input(data.intensity, data.coverage, base.grid.step)
    base_calls = predicted_proba(base, x, verdicts) >= base.thresholds
    votes = vote_features(data.intensity, data.coverage)
    result = CrossvalResult("", list(files), [f for f, b in zip(files, bad, strict=True) if b])
    plans: list[tuple[Scheme, list[np.ndarray]]] = []
    if plan.leave_one_out:
        plans.append((Scheme(n - 1, True), [np.setdiff1d(np.arange(n), [i]) for i in range(n)]))
    for k in _fitting(plan, n, note):
        plans.append((Scheme(k, False), _draws(labels, k, plan, note)))
    for scheme, draws in plans:
        t0 = time.perf_counter()
        pooled: dict[str, list[np.ndarray]] = {r: [] for r in ROWS}
        tests: list[np.ndarray] = []
        with tempfile.TemporaryDirectory(prefix="xrdmtl-cv-") as tmp:
            for j, train in enumerate(draws):
                test = np.setdiff1d(np.arange(n), train)
                sub = LabeledPatterns(data.intensity[train], data.coverage[train], labels[train])
                extra = (
                    Unlabeled(
                        data.intensity[test], data.coverage[test],
                        None if verdicts is None else verdicts.take(test),
                    )
                    if plan.transductive
                    else None
                )  # fmt: skip
                adapted = adapt_arrays(
                    base, sub, flags[train], config, tuning, Path(tmp) / f"split{j}", extra,
                    None if verdicts is None else verdicts.take(train),
                )  # fmt: skip
                calls = {
                    "default model": base_calls[test],
                    "nearest-neighbour vote": nearest_neighbour_vote(
                        votes[train], labels[train], votes[test]
                    ),
                    "adapted": predicted_proba(
                        adapted.model, x[test], None if verdicts is None else verdicts.take(test)
                    )
                    >= adapted.model.thresholds,
                }
                scheme.chosen.append(
                    adapted.fit.chosen.describe()
                    + (", network fine-tuned" if adapted.network_tuned else "")
                )
                for row, c in calls.items():
                    pooled[row].append(np.asarray(c, bool))
                tests.append(test)
                if not scheme.leave_one_out:
                    for row, c in calls.items():
                        e, ec = _score(c, labels[test], ~bad[test])
                        scheme.exact[row].append(e)
                        if ec is not None:
                            scheme.exact_uncontradicted[row].append(ec)
        idx = np.concatenate(tests)
        scheme.held_out = len(idx)
        for row in ROWS:
            c = np.concatenate(pooled[row])
            wrong = ~(c == labels[idx].astype(bool)).all(axis=1)
            scheme.wrong[row] = sorted({files[i] for i in idx[wrong]})
            if scheme.leave_one_out:
                e, ec = _score(c, labels[idx], ~bad[idx])
                scheme.exact[row].append(e)
                if ec is not None:
                    scheme.exact_uncontradicted[row].append(ec)
        scheme.seconds = time.perf_counter() - t0
        result.schemes.append(scheme)
        if note is not None:
            what = "leave-one-out" if scheme.leave_one_out else f"N = {scheme.n_labeled}"
            note(
                f"{what}: adapted {scheme.pooled('adapted'):.1%}, vote {scheme.pooled('nearest-neighbour vote'):.1%}, "
                f"default {scheme.pooled('default model'):.1%} ({scheme.seconds:.0f} s)"
            )
    return result


def _fitting(plan: CrossvalPlan, n: int, note: Callable[[str], None] | None) -> list[int]:
    """The N of ``plan`` that ``n`` patterns can split (2 ≤ N < n): an N the user chose that does
    not fit is a ValueError; the default curve's (``plan.default_ns``) are left out with a note."""
    unfit = [k for k in plan.ns if not 1 < k < n]
    if unfit and not plan.default_ns:
        raise ValueError(f"N must lie between 2 and {n - 1}, got {unfit[0]}")
    if unfit and note is not None:
        note(
            f"the leave-k-out curve leaves out N = {', '.join(map(str, unfit))}: "
            f"{n} labeled patterns hold no such split"
        )
    return [k for k in plan.ns if 1 < k < n]


def _draws(
    labels: np.ndarray, k: int, plan: CrossvalPlan, note: Callable[[str], None] | None
) -> list[np.ndarray]:
    """``plan.splits`` different stratified draws of ``k`` patterns, or all there are where
    fewer exist (with a note): a split drawn twice would be scored twice."""
    want = min(plan.splits, distinct_splits(labels, k))
    if want < plan.splits and note is not None:
        note(f"N = {k}: only {want} different split(s) exist, not {plan.splits}; using those")
    seen: dict[tuple[int, ...], np.ndarray] = {}
    for j in range(max(1000, 20 * plan.splits)):
        if len(seen) == want:
            break
        draw = training_draw(labels, k, plan.seed, j)
        seen.setdefault(tuple(draw.tolist()), draw)
    return list(seen.values())


def format_table(results: dict[str, CrossvalResult]) -> str:
    """A markdown table, one line per named result (e.g. masked, unmasked) and scheme: exact match
    of the three rows on all held-out patterns and on those whose labels the audit does not contradict."""
    header = ["set", "labeled", *ROWS, *(f"{r}, uncontradicted" for r in ROWS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, res in results.items():
        for s in res.schemes:
            what = (
                f"{s.n_labeled} (leave-one-out)"
                if s.leave_one_out
                else f"{s.n_labeled} ({len(s.exact[ROWS[0]])} splits)"
            )
            cells = [name, what]
            for clean in (False, True):
                for row in ROWS:
                    mean, sd = s.pooled(row, clean), s.spread(row, clean)
                    cells.append(
                        "-" if np.isnan(mean) else f"{mean:.1%}" + (f" ± {sd:.1%}" if sd else "")
                    )
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def crossvalidate_labels(
    labels_csv: str | Path,
    model: str | Path | None = None,
    options: ReadOptions | None = None,
    *,
    plan: CrossvalPlan | None = None,
    config: AdaptConfig | None = None,
    tuning: NetworkTuning | None = None,
    note: Callable[[str], None] | None = None,
) -> CrossvalResult:
    """:func:`crossvalidate` on the patterns of a labels CSV, read with ``options`` as ``predict``
    reads them, with the physics audit's verdicts; ``model`` defaults to the shipped one."""
    from ..model.files import default_model_dir

    model_path = Path(model) if model is not None else default_model_dir()
    labeled = read_and_audit(labels_csv, model_path, options, note=note)
    for line in labeled.skipped:
        if note is not None:
            note(f"skipped: {line}")
    result = crossvalidate(
        model_path, labeled.data, labeled.files, labeled.contradicted, plan, config, tuning, note,
        labeled.verdicts,
    )  # fmt: skip
    result.labels_csv = str(labels_csv)
    return result
