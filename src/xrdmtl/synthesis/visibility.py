"""Which drawn phases a frame lets anyone see: clean reflections counted from the simulator's truth.

A reflection of a phase is *clean* where, integrated over a window around its position (all pixels
whose 2θ lies within ``max(0.6 FWHM, one pixel)`` of it, about the best window for a Gaussian;
reflections of the phase closer than that share one window), its expected counts reach Poisson SNR ≥ ``snr`` given the total expected counts there
(background, every phase, anvil spots and hot pixels; masked pixels left out) **and** at least
``dominance`` times the counts of every other phase drawn in the frame (unknown phases included).
A phase with no clean reflection is one no method can be asked to see; the overlap-aware label
"present with ≥ k clean reflections" is :func:`visible_labels`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..physics.units import q_to_tth
from .frames import FrameSample, FrameSimulator

SNR = 5.0
DOMINANCE = 2.0
WINDOW = 0.6  # half-width of a reflection's window in FWHM (at least one pixel)


def line_windows(positions: np.ndarray, half: float) -> np.ndarray:
    """(lo, hi) 2θ windows of half-width ``half`` around sorted ``positions``, overlapping ones merged."""
    t = np.sort(np.asarray(positions, dtype=float))
    if t.size == 0:
        return np.zeros((0, 2))
    start = np.r_[True, np.diff(t) > 2 * half]
    group = np.cumsum(start) - 1
    lo = np.full(group[-1] + 1, np.inf)
    hi = np.full(group[-1] + 1, -np.inf)
    np.minimum.at(lo, group, t - half)
    np.maximum.at(hi, group, t + half)
    return np.stack([lo, hi], axis=1)


def clean_counts(
    signal: np.ndarray, total: np.ndarray, others: np.ndarray, snr: float, dominance: float
) -> int:
    """How many windows are clean: ``signal`` (per window) ≥ ``snr`` √``total`` and ≥ ``dominance``
    × every row of ``others`` (phases × windows)."""
    ok = (signal > 0) & (signal >= snr * np.sqrt(np.maximum(total, 0.0)))
    if others.size:
        ok &= signal >= dominance * others.max(axis=0)
    return int(ok.sum())


def _positions(sim: FrameSimulator, name: str, meta: dict) -> np.ndarray:
    """2θ (deg) of a drawn phase's reflections at its drawn lattice scale and c/a strain."""
    phase = next(p for p in sim.targets + sim.distractors if p.name == name)
    q, _, _, c_frac = sim._reflections[id(phase)]
    q = q / meta["lattice_scale"] * (1 - meta["aniso"] * (c_frac - 1 / 3))
    tth = q_to_tth(q, sim.geometry.wavelength)
    return tth[np.isfinite(tth) & (tth < sim.tth_max - 0.5)]


def clean_reflections(
    sim: FrameSimulator,
    sample: FrameSample,
    mask: np.ndarray | None = None,
    snr: float = SNR,
    dominance: float = DOMINANCE,
) -> dict[str, int]:
    """Clean reflections of every library phase drawn in ``sample`` (simulated with
    ``keep_parts=True``), on the detector less ``mask`` (True = left out)."""
    if sample.phase_counts is None or sample.background_counts is None:
        raise ValueError("clean_reflections needs a sample drawn with keep_parts=True")
    keep = np.ones(sim.tth.size, bool) if mask is None else ~np.asarray(mask, bool).ravel()
    order = sim.order
    parts = sample.phase_counts
    names = list(parts)
    total = sample.background_counts + sample.spot_counts.ravel() + sum(parts.values())
    stacked = np.stack([total, *(parts[n] for n in names)]) * keep
    cum = np.concatenate([np.zeros((len(stacked), 1)), np.cumsum(stacked[:, order], 1)], 1)
    out: dict[str, int] = {}
    for k, name in enumerate(names):
        meta = sample.info[name]
        if "fwhm_deg" not in meta or name.startswith("unknown"):
            continue
        win = line_windows(
            _positions(sim, name, meta), max(WINDOW * meta["fwhm_deg"], sim.pixel_deg)
        )
        edges = np.searchsorted(sim.tth_sorted, win)
        sums = cum[:, edges[:, 1]] - cum[:, edges[:, 0]]  # (1 + phases) × windows
        others = np.delete(sums[1:], k, axis=0)
        out[name] = clean_counts(sums[1 + k], sums[0], others, snr, dominance)
    return out


def visible_labels(
    labels: np.ndarray, phases: Sequence[str], clean: Sequence[dict[str, int]], k: int
) -> np.ndarray:
    """``labels`` (patterns × phases, 0/1) kept only where the phase has ≥ ``k`` clean reflections."""
    counts = np.array([[c.get(p, 0) for p in phases] for c in clean])
    return (np.asarray(labels) > 0) & (counts >= k)
