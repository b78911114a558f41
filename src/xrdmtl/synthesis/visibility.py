"""Which drawn phases a frame lets anyone see: clean reflections counted from the simulator's truth.

A reflection of a phase is *clean* where, integrated over a window around its position (all pixels
whose 2θ lies within ``max(0.6 FWHM, one pixel)`` of it, about the best window for a Gaussian;
reflections of the phase closer than that share one window), its expected counts reach Poisson SNR ≥ ``snr`` given the total expected counts there
(background, every phase, anvil spots and hot pixels; masked pixels left out) **and** at least
``dominance`` times the counts of every other phase drawn in the frame (unknown phases included).
A phase with no clean reflection is one no method can be asked to see; the overlap-aware label
"present with ≥ k clean reflections" is :func:`visible_labels`. :func:`cell_bounds` is the cell's
counterpart: how often any method could place a and c within 0.2 %, given those reflections — a
local bound, which knows which peaks are the phase's. :func:`cell_identifiable` asks the global
question of a pattern as the check reads it: does any cell of the phase's range away from the truth
explain as many of the peaks the pattern shows?
"""

from __future__ import annotations

from collections.abc import Sequence
from math import erf

import numpy as np

from ..physics.grid import QGrid
from ..physics.refine import (
    C_OVER_A_RANGE,
    SCALE_STEP,
    PhaseLines,
    grid_points,
    one_line_per_peak,
    peak_index,
    scan_cells,
)
from ..physics.units import q_to_tth
from .frames import SMOOTH_SPOTS, FrameSample, FrameSimulator

SNR = 5.0
DOMINANCE = 2.0
WINDOW = 0.6  # half-width of a reflection's window in FWHM (at least one pixel)
POSITION_SIGMA = 0.57  # a Gaussian line's position error over its background, in FWHM / SNR
CELL_TOLERANCE = 0.002  # relative: the cell accuracy the issue asks for
TRUTH_BOX = 3  # steps of SCALE_STEP: the cells about the truth given to it (a scan's rounding)


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
    """How many windows are clean (:func:`_clean`)."""
    return int(_clean(signal, total, others, snr, dominance).sum())


def _clean(
    signal: np.ndarray, total: np.ndarray, others: np.ndarray, snr: float, dominance: float
) -> np.ndarray:
    """Which windows are clean: ``signal`` (per window) ≥ ``snr`` √``total`` and ≥ ``dominance``
    × every row of ``others`` (phases × windows)."""
    ok = (signal > 0) & (signal >= snr * np.sqrt(np.maximum(total, 0.0)))
    if others.size:
        ok &= signal >= dominance * others.max(axis=0)
    return np.asarray(ok)


def _library_phases(sample: FrameSample, names: list[str]) -> list[tuple[int, str, dict]]:
    """(row in the cumulative counts, name, draw) of the drawn phases a library holds (not the
    random-cell unknowns, whose reflections no table lists)."""
    return [
        (k, name, sample.info[name])
        for k, name in enumerate(names)
        if "fwhm_deg" in sample.info[name] and not name.startswith("unknown")
    ]


def _drawn(sim: FrameSimulator, name: str, meta: dict) -> tuple[np.ndarray, ...]:
    """A drawn phase's reflections on the detector: unstrained Q, cos² to c*, and Q and 2θ (deg) at
    its drawn lattice scale and c/a strain."""
    phase = next(p for p in sim.targets + sim.distractors if p.name == name)
    q0, _, _, c_frac = sim._reflections[id(phase)]
    q = q0 / meta["lattice_scale"] * (1 - meta["aniso"] * (c_frac - 1 / 3))
    tth = q_to_tth(q, sim.geometry.wavelength)
    on = np.isfinite(tth) & (tth < sim.tth_max - 0.5)
    return q0[on], c_frac[on], q[on], tth[on]


def _cumulative(
    sim: FrameSimulator, sample: FrameSample, mask: np.ndarray | None
) -> tuple[list[str], np.ndarray]:
    """The drawn phases' names and the cumulative expected counts along 2θ (pixels sorted) of the
    whole frame (row 0) and of each phase, masked pixels left out."""
    if sample.phase_counts is None or sample.background_counts is None:
        raise ValueError("the sample must be drawn with keep_parts=True")
    keep = np.ones(sim.tth.size, bool) if mask is None else ~np.asarray(mask, bool).ravel()
    parts = sample.phase_counts
    names = list(parts)
    total = sample.background_counts + sample.spot_counts.ravel() + sum(parts.values())
    stacked = np.stack([total, *(parts[n] for n in names)]) * keep
    cum = np.concatenate([np.zeros((len(stacked), 1)), np.cumsum(stacked[:, sim.order], 1)], 1)
    return names, cum


def _window_sums(sim: FrameSimulator, cum: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """(1 + phases) × windows: the expected counts in each 2θ window (lo, hi)."""
    edges = np.searchsorted(sim.tth_sorted, windows)
    return np.asarray(cum[:, edges[:, 1]] - cum[:, edges[:, 0]])


def clean_reflections(
    sim: FrameSimulator,
    sample: FrameSample,
    mask: np.ndarray | None = None,
    snr: float = SNR,
    dominance: float = DOMINANCE,
) -> dict[str, int]:
    """Clean reflections of every library phase drawn in ``sample`` (simulated with
    ``keep_parts=True``), on the detector less ``mask`` (True = left out)."""
    names, cum = _cumulative(sim, sample, mask)
    out: dict[str, int] = {}
    for k, name, meta in _library_phases(sample, names):
        tth = _drawn(sim, name, meta)[3]
        sums = _window_sums(
            sim, cum, line_windows(tth, max(WINDOW * meta["fwhm_deg"], sim.pixel_deg))
        )
        others = np.delete(sums[1:], k, axis=0)
        out[name] = clean_counts(sums[1 + k], sums[0], others, snr, dominance)
    return out


def cell_bounds(
    sim: FrameSimulator,
    sample: FrameSample,
    mask: np.ndarray | None = None,
    tolerance: float = CELL_TOLERANCE,
) -> dict[str, float]:
    """The best any method can do on each drawn library phase's cell: the chance that a and c both
    land within ``tolerance`` (relative) of the drawn cell, from the Cramér–Rao bound of the lattice
    scale and c-vs-a strain given the phase's clean reflections that stand alone in their window,
    each placed to ``POSITION_SIGMA`` FWHM / SNR (a Gaussian line over its background) and the
    geometry known; on a spotty ring (fewer than ``SMOOTH_SPOTS`` crystallites) whose spots the
    simulator scatters radially (:meth:`FrameSimulator.spot_scatter_deg`, about a FWHM), the centroid of its
    spots is off by that scatter over √(spots / 2) as well (exponential spot heights: half as many
    effective spots). Fewer than two such reflections: 0."""
    names, cum = _cumulative(sim, sample, mask)
    lam = sim.geometry.wavelength
    out: dict[str, float] = {}
    for k, name, meta in _library_phases(sample, names):
        q0, c_frac, q, tth = _drawn(sim, name, meta)
        fwhm = max(meta["fwhm_deg"], sim.pixel_deg)
        half = max(WINDOW * meta["fwhm_deg"], sim.pixel_deg)
        alone = (np.abs(tth[:, None] - tth[None]) < 2 * half).sum(1) == 1
        sums = _window_sums(sim, cum, np.stack([tth - half, tth + half], 1))
        signal, others = sums[1 + k], np.delete(sums[1:], k, axis=0)
        clean = alone & _clean(signal, sums[0], others, SNR, DOMINANCE)
        if clean.sum() < 2:
            out[name] = 0.0
            continue
        s = meta["lattice_scale"]
        spots = meta["spots_per_ring"]
        spread = 0.0 if spots >= SMOOTH_SPOTS else sim.spot_scatter_deg(meta["fwhm_deg"])
        spread /= np.sqrt(max(spots / 2, 1.0))
        sigma_deg = np.hypot(
            POSITION_SIGMA * fwhm * np.sqrt(sums[0][clean]) / signal[clean], spread
        )
        sigma_q = (2 * np.pi / lam) * np.cos(np.radians(tth[clean]) / 2) * np.radians(sigma_deg)
        jac = np.stack([-q[clean] / s, -q0[clean] / s * (c_frac[clean] - 1 / 3)], 1)
        cov = np.linalg.pinv((jac / sigma_q[:, None] ** 2).T @ jac)
        # a = a₀ s / (1 + e/3), c = c₀ s / (1 − 2e/3): relative errors δs/s − δe/3 and δs/s + 2δe/3
        grads = np.array([[1 / s, -1 / 3], [1 / s, 2 / 3]])
        sigmas = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", grads, cov, grads), 1e-300))
        out[name] = float(np.prod([erf(tolerance / (v * np.sqrt(2))) for v in sigmas]))
    return out


def visible_labels(
    labels: np.ndarray, phases: Sequence[str], clean: Sequence[dict[str, int]], k: int
) -> np.ndarray:
    """``labels`` (patterns × phases, 0/1) kept only where the phase has ≥ ``k`` clean reflections."""
    counts = np.array([[c.get(p, 0) for p in phases] for c in clean])
    return (np.asarray(labels) > 0) & (counts >= k)


def cell_identifiable(
    z: np.ndarray,
    grid: QGrid,
    lines: PhaseLines,
    scale_a: np.ndarray,
    scale_c: np.ndarray,
    reach: float,
    tolerance: float = CELL_TOLERANCE,
) -> np.ndarray:
    """(B,) 1, ½ or 0: whether the positions of the peaks a pattern shows place a phase within
    ``tolerance`` of its true scales (``scale_a``, ``scale_c``, (B,)). ``z``: (B, G) significance
    on ``grid`` at one filter width (:func:`~xrdmtl.physics.refine.significance`).

    A cell's score is the number of distinct peaks (local maxima at ``Z_SUPPORT``) that its lines
    hit within ``reach`` Å⁻¹, one line per peak. The truth gets the best of the cells within
    :data:`TRUTH_BOX` steps of it; it is weighed against the best cell of the phase's whole range
    (lattice scale and, where c is free, c/a, in steps of ``SCALE_STEP``) lying beyond
    ``tolerance``: 1 where the truth's peaks outnumber it, ½ on a tie, 0 where the wrong cell hits
    more. Where a wrong cell explains more of the pattern's peaks than the truth does, no method that
    places a cell by its lines' positions can choose the truth; few-crystal intensities (half the
    lines missing, the rest erratic) add little to tell them apart."""
    z = np.asarray(z, np.float32)
    scale_a, scale_c = np.asarray(scale_a, float), np.asarray(scale_c, float)
    if (
        z.ndim != 2
        or z.shape[1] != grid.n
        or scale_a.shape != (len(z),)
        or scale_c.shape != (len(z),)
    ):
        raise ValueError(f"z must be (B, {grid.n}), with one true scale pair per pattern")
    ids = peak_index(z[:, None], grid, reach)[:, 0]  # (B, G + 1)
    steps = np.arange(-C_OVER_A_RANGE, C_OVER_A_RANGE + SCALE_STEP / 2, SCALE_STEP)
    range_a, range_c = scan_cells(lines, ratios=steps)  # the whole range, every step
    box = np.arange(-TRUTH_BOX, TRUTH_BOX + 1) * SCALE_STEP
    da, dc = (d.ravel() for d in np.meshgrid(box, box if lines.free_c else [0.0], indexing="ij"))
    out = np.empty(len(z))
    for rows in np.array_split(np.arange(len(z)), max(1, len(z) // 8)):  # ~50 MB a part
        ta = scale_a[rows, None] * (1 + da)
        ratio = (scale_c / scale_a)[rows, None]
        tc = scale_c[rows, None] * (1 + dc) if lines.free_c else ta * ratio
        cells_a = np.concatenate([np.broadcast_to(range_a, (rows.size, range_a.size)), ta], 1)
        cells_c = np.concatenate([np.broadcast_to(range_c, (rows.size, range_c.size)), tc], 1)
        idx = grid_points(lines.positions(cells_a, cells_c), grid).reshape(rows.size, -1)
        got = np.take_along_axis(ids[rows], idx, axis=1).reshape(*cells_a.shape, -1)
        hits = (one_line_per_peak(got) & (got < grid.n)).sum(-1)  # (rows, cells)
        near = (np.abs(cells_a / scale_a[rows, None] - 1) < tolerance) & (
            np.abs(cells_c / scale_c[rows, None] - 1) < tolerance
        )
        truth, wrong = np.where(near, hits, -1).max(1), np.where(near, -1, hits).max(1)
        out[rows] = np.where(truth > wrong, 1.0, np.where(truth == wrong, 0.5, 0.0))
    return out
