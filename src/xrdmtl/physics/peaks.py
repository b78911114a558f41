"""Model-free evidence for a phase: detected peaks matched against the phase's reflections.

The pattern is resampled onto a fine uniform Q grid, its smooth background removed with the same
filter as the model input (:func:`xrdmtl.physics.background.smooth_background`), the noise estimated as the
robust MAD of what is left, and peaks detected above a significance threshold. Each phase's strongest
reflections inside the covered Q range are then matched to the detected peaks for every lattice scale
``s`` of a grid over the phase's lattice range (reflections at ``Q / s``), and the best ``s`` kept.

The score (0–1) is the intensity-weighted fraction of those reflections that have a peak within
tolerance, each counted by its significance (a peak at ``Z_FULL`` × noise counts fully), less a penalty
for strong reflections that are absent although the matched peaks say they should stand out. It is
also a classical baseline: ``score >= threshold`` calls the phase present.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.signal import find_peaks

from .background import smooth_background
from .grid import QGrid
from .miller import format_hkl
from .pattern import Pattern, resample
from .phases import Phase, Reflections

Q_STEP = 0.002  # Å⁻¹: working grid, finer than any measured peak (FWHM ≳ 0.01 Å⁻¹)
Z_DETECT = 4.0  # a peak must stand this many noise units above the background
Z_FULL = 8.0  # a matched peak this significant counts fully (twice the detection threshold)
TOLERANCE_Q = 0.012  # Å⁻¹: largest distance between an expected reflection and its peak
N_STRONGEST = 10  # reflections considered per phase (the strongest inside the covered range)
MIN_REL_INTENSITY = 5.0  # ... and at least this intense (strongest = 100)
MISSING_PENALTY = 0.5  # weight of strong-but-absent reflections in the score
Z_EXPECTED_VISIBLE = 8.0  # an absent reflection is penalised when the matches predict it this high
SCALE_STEP = 0.0005  # lattice-scale grid step
THRESHOLD = 0.5  # fixed presence threshold on the score (see docs/audit_hdac.md)


@dataclass(frozen=True)
class Peaks:
    """Background-removed pattern on a uniform Q grid and the peaks found in it."""

    q: np.ndarray  # grid, Å⁻¹
    signal: np.ndarray  # intensity as measured (0 outside coverage)
    background: np.ndarray
    coverage: np.ndarray  # bool
    noise: float  # robust noise of the background-removed signal
    peak_q: np.ndarray  # detected peak positions, ascending
    peak_z: np.ndarray  # their height above background / noise

    @property
    def detrended(self) -> np.ndarray:
        """Signal minus background, zero where not covered."""
        return np.where(self.coverage, self.signal - self.background, 0.0)

    @property
    def q_range(self) -> tuple[float, float]:
        """First and last covered Q."""
        covered = self.q[self.coverage]
        return float(covered[0]), float(covered[-1])


@dataclass(frozen=True)
class MatchedReflection:
    """One expected reflection and the peak it matched (``found_q`` NaN and ``z`` 0 when absent)."""

    hkl: tuple[int, ...]
    intensity: float  # relative, strongest reflection of the phase = 100
    expected_q: float  # at the best lattice scale
    found_q: float
    z: float  # found peak height / noise
    peak: int = -1  # index of the found peak in :attr:`Peaks.peak_q`


@dataclass(frozen=True)
class PhaseEvidence:
    """Peak-match evidence for one phase in one pattern."""

    phase: str
    score: float  # 0–1, see module docstring
    lattice_scale: float  # best s: lattice lengths × s, reflections at Q / s
    matched: tuple[MatchedReflection, ...]
    missing: tuple[MatchedReflection, ...]  # counted reflections without a peak, strongest first
    overlapped: tuple[
        MatchedReflection, ...
    ]  # on peaks another phase explains better (not counted)
    n_considered: int  # reflections counted: inside the covered range and not overlapped
    max_z: float  # significance of the strongest matched peak

    def present(self, threshold: float = THRESHOLD) -> bool:
        """The classical call: score at or above ``threshold``."""
        return self.score >= threshold

    def summary(self) -> str:
        """One line: score, scale and the matched / missing reflections."""
        hits = ", ".join(f"{_hkl(m.hkl)}@{m.found_q:.3f}(z={m.z:.0f})" for m in self.matched[:6])
        miss = ", ".join(f"{_hkl(m.hkl)}@{m.expected_q:.3f}" for m in self.missing[:4])
        return (
            f"score {self.score:.2f}, s={self.lattice_scale:.4f}, "
            f"{len(self.matched)}/{self.n_considered} matched [{hits or '-'}]"
            + (f", missing [{miss}]" if miss else "")
        )


def _hkl(hkl: tuple[int, ...]) -> str:
    """(2 -1 6): this line lands in CSVs too, so the plain form, in parentheses."""
    return f"({format_hkl(hkl, 'plain')})"


def find_pattern_peaks(pattern: Pattern, z_detect: float = Z_DETECT) -> Peaks:
    """Remove the background of ``pattern`` on a fine Q grid, estimate the noise, detect peaks."""
    q_native = pattern.q
    lo, hi = float(np.min(q_native)), float(np.max(q_native))
    grid = QGrid(lo, hi, max(16, int((hi - lo) / Q_STEP) + 1))
    signal, coverage = resample(q_native, pattern.y, grid)
    signal = signal.astype(float)
    background = smooth_background(signal[None], coverage[None], grid.step)[0]
    # the opening follows the lower envelope: lift it to the median level of what it leaves
    background += float(np.median((signal - background)[coverage]))
    detrended = np.where(coverage, signal - background, 0.0)
    noise = 1.4826 * float(np.median(np.abs(detrended[coverage])))
    noise = max(noise, 1e-9 * max(float(np.abs(signal).max()), 1e-12))
    idx, _ = find_peaks(detrended, height=z_detect * noise, prominence=z_detect * noise)
    idx = idx[coverage[idx]]
    return Peaks(
        grid.values, signal, background, coverage, noise, grid.values[idx], detrended[idx] / noise
    )


def match_phase(
    peaks: Peaks, phase: Phase, wavelength: float | None = None, claimed: np.ndarray | None = None
) -> PhaseEvidence:
    """Score ``phase`` against the detected ``peaks``, floating its lattice over its range.

    ``claimed`` (bool per detected peak) marks peaks another phase explains better: a reflection that
    falls on one is overlapped, neither evidence for the phase nor missing.
    """
    lo_s, hi_s = (float(v) for v in phase.priors.lattice_range)
    scales = np.arange(lo_s, hi_s + SCALE_STEP / 2, SCALE_STEP)
    q_lo, q_hi = peaks.q_range
    refl = phase.reflections(wavelength, q_max=q_hi * hi_s)
    # reflections inside the covered range for some scale of the grid, strongest first
    inside = (
        (refl.q / hi_s >= q_lo) & (refl.q / lo_s <= q_hi) & (refl.intensity >= MIN_REL_INTENSITY)
    )
    order = np.flatnonzero(inside)[np.argsort(-refl.intensity[inside], kind="stable")][:N_STRONGEST]
    if order.size == 0 or peaks.peak_q.size == 0:
        missing = tuple(_reflection(refl, i, float(refl.q[i])) for i in order)
        return PhaseEvidence(phase.name, 0.0, 1.0, (), missing, (), int(order.size), 0.0)

    inten = refl.intensity[order]
    expected = refl.q[order][None, :] / scales[:, None]  # (n_scales, n_refl)
    nearest, dist = _nearest(peaks.peak_q, expected)
    z = peaks.peak_z[nearest]
    near = (expected >= q_lo) & (expected <= q_hi) & (dist <= TOLERANCE_Q)
    overlapped = near & (False if claimed is None else claimed[nearest])
    counted = (expected >= q_lo) & (expected <= q_hi) & ~overlapped
    hit = near & ~overlapped
    credit = np.where(hit, np.minimum(z / Z_FULL, 1.0), 0.0)
    # how high each reflection should stand, from the matched peaks' median height per unit intensity
    ratio = np.where(hit, z / inten[None, :], np.nan)
    per_unit = np.zeros(len(scales))
    any_hit = hit.any(1)
    per_unit[any_hit] = np.nanmedian(ratio[any_hit], axis=1)
    absent = counted & ~hit & (per_unit[:, None] * inten[None, :] >= Z_EXPECTED_VISIBLE)
    w = np.where(counted, inten[None, :], 0.0)
    score = ((w * credit).sum(1) - MISSING_PENALTY * (w * absent).sum(1)) / np.maximum(
        w.sum(1), 1e-12
    )
    score = np.clip(score, 0.0, 1.0)
    # best scale: highest score, then the closest fit of the matched positions, then the range's middle
    resid = np.where(hit, w * dist, 0.0).sum(1) / np.maximum(np.where(hit, w, 0.0).sum(1), 1e-12)
    middle = np.abs(scales - 0.5 * (lo_s + hi_s))
    best = int(np.lexsort((middle, np.where(any_hit, resid, np.inf), -np.round(score, 9)))[0])
    scale = _refine_scale(
        refl.q[order][hit[best]], peaks.peak_q[nearest[best, hit[best]]], float(scales[best])
    )
    scale = float(np.clip(scale, lo_s, hi_s))

    rows: dict[str, list[MatchedReflection]] = {"hit": [], "missing": [], "overlapped": []}
    for j, i in enumerate(order):
        kind = (
            "hit"
            if hit[best, j]
            else "overlapped"
            if overlapped[best, j]
            else "missing"
            if counted[best, j]
            else ""
        )
        if kind:
            k = int(nearest[best, j]) if kind != "missing" else -1
            rows[kind].append(_reflection(refl, i, float(refl.q[i] / scale), peaks, k))
    rows["hit"].sort(key=lambda m: m.expected_q)
    return PhaseEvidence(
        phase.name,
        float(score[best]),
        scale,
        tuple(rows["hit"]),
        tuple(rows["missing"]),
        tuple(rows["overlapped"]),
        int(counted[best].sum()),
        max((m.z for m in rows["hit"]), default=0.0),
    )


def _refine_scale(q_ref: np.ndarray, q_found: np.ndarray, scale: float) -> float:
    """Least-squares lattice scale from matched pairs (found ≈ q_ref / s); ``scale`` if under two."""
    if q_ref.size < 2:
        return scale
    return float((q_ref**2).sum() / (q_ref * q_found).sum())


def _reflection(
    refl: Reflections, i: int, expected_q: float, peaks: Peaks | None = None, peak: int = -1
) -> MatchedReflection:
    if peak < 0 or peaks is None:
        return MatchedReflection(
            refl.hkl[i], float(refl.intensity[i]), expected_q, float("nan"), 0.0, peak
        )
    return MatchedReflection(
        refl.hkl[i],
        float(refl.intensity[i]),
        expected_q,
        float(peaks.peak_q[peak]),
        float(peaks.peak_z[peak]),
        peak,
    )


def _nearest(sorted_q: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest value of ``sorted_q`` to each element of ``x``, and the distance."""
    right = np.clip(np.searchsorted(sorted_q, x), 0, sorted_q.size - 1)
    left = np.clip(right - 1, 0, sorted_q.size - 1)
    use_left = np.abs(x - sorted_q[left]) < np.abs(x - sorted_q[right])
    idx = np.where(use_left, left, right)
    return idx, np.abs(x - sorted_q[idx])


def match_all(
    peaks: Peaks, phases: Sequence[Phase], wavelength: float | None = None
) -> dict[str, PhaseEvidence]:
    """Evidence for each of ``phases``, keyed by name, with shared peaks explained away.

    A detected peak that several phases match is given to the one with the most support from peaks
    no other phase matches (then the higher score); the others are scored again with it overlapped.
    """
    first = {p.name: match_phase(peaks, p, wavelength) for p in phases}
    users = np.zeros((len(phases), peaks.peak_q.size), dtype=bool)
    for k, ev in enumerate(first.values()):
        users[k, [m.peak for m in ev.matched]] = True
    contested = users.sum(0) > 1
    if not contested.any():
        return first
    support = np.array(
        [
            sum(min(m.z / Z_FULL, 1.0) for m in ev.matched if not contested[m.peak])
            for ev in first.values()
        ]
    )
    scores = np.array([ev.score for ev in first.values()])
    rank = np.lexsort((scores, support))[::-1]  # best first
    owner = np.full(peaks.peak_q.size, -1)
    for k in rank[::-1]:  # the best phase writes last
        owner[contested & users[k]] = k
    return {
        p.name: match_phase(peaks, p, wavelength, claimed=contested & (owner != k))
        if (users[k] & contested).any()
        else first[p.name]
        for k, p in enumerate(phases)
    }


def match_phases(pattern: Pattern, phases: Sequence[Phase]) -> dict[str, PhaseEvidence]:
    """Evidence for each of ``phases`` in ``pattern`` (at the pattern's wavelength), keyed by name."""
    return match_all(find_pattern_peaks(pattern), phases, pattern.wavelength)
