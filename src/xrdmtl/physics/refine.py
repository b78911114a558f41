"""Refine one phase against a batch of background-removed patterns on a Q grid, and weigh the evidence.

The check behind every call (``docs/verify.md``). For a phase and each pattern:

1. **Noise at peak scale.** The background-removed pattern is smoothed with Gaussians of a few widths
   (:data:`WIDTHS_Q`, FWHM in Å⁻¹). At each width the smoothed value at Q is the least-squares height
   of one peak of that width centred there (a matched filter), and its noise is read from the smoothed
   pattern itself: the spread of its lower half (peaks only raise values), so noise correlated over a
   peak's width, as in expert-masked integrations, is measured where a point-to-point estimate reads
   far too low. ``z`` is that height in noise units.
2. **Free heights, charged.** At a cell, every reflection (of the strongest :data:`N_REFLECTIONS`, at
   least :data:`MIN_INTENSITY` % of the strongest) gets its own non-negative height, so few crystals
   and texture (lines missing, the rest at erratic heights) fit as well as a powder; a height is kept
   only where it pays for itself (the gain ``z²`` over a BIC charge :data:`HEIGHT_COST`), and each
   line's gain is capped at ``Z_CAP²``, so one strong coincident line cannot carry a phase.
   The statistic ``T`` is the sum over reflections.
3. **The cell.** ``T`` is scanned over the lattice scale (the phase's prior range, widened to
   :data:`SCALE_COVERAGE`) and, for phases whose c axis is free (hexagonal, trigonal, tetragonal),
   c/a within :data:`C_OVER_A_RANGE`; then a local 2D scan, at the filter width where the best
   cell stands out most from any cell 0.2 % away (:data:`PLACING_WIDTHS`), and a weighted
   Gauss–Newton fit of the supporting lines' positions give the a and c scales, a zero shift (with a prior: :data:`ZERO_SIGMA`,
   or :data:`ZERO_SIGMA_CALIBRATED` for a pattern integrated from a frame with its calibrated geometry)
   and their uncertainties.
4. **Look-elsewhere null, per pattern.** The same scan, cell for cell, at lattices 7 % smaller and
   larger (:data:`NULL_FACTORS`), where the phase is not, measures how much ``T`` this pattern gives
   the phase's line list by chance — many foreign peaks give a high null. ``evidence =
   (T_best − mean of the two windows' best T) / line``, with ``line = Z_CAP² − HEIGHT_COST`` the most
   one line can add: the evidence counts lines beyond chance.

Lines on a reflection of another phase that owns them (``claimed``, grid points) count for neither.
Everything is vectorised over the batch, the widths and the cells (NumPy): each phase's scan
(:class:`Scan`: its cells, their lines' grid points and the powder fit's sparse design matrix per
window) is built once per grid, and the peak maps are stored point-major, so a line at a cell is
one contiguous row of the batch. :func:`fit_profile` (the fitted curve, NNLS heights) is for plots
and reports.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
from scipy import sparse
from scipy.ndimage import gaussian_filter1d
from scipy.optimize import nnls

from .grid import QGrid
from .phases import Phase

WIDTHS_Q = (0.006, 0.012, 0.024, 0.048)  # Å⁻¹ FWHM of the matched filters
N_REFLECTIONS = 40  # strongest reflections inside the grid, per phase
MIN_INTENSITY = 2.0  # % of the strongest (Q-space intensities, no Lorentz–polarisation)
Z_CAP = 8.0  # a line's gain is capped at Z_CAP² (one coincident line cannot carry a phase)
HEIGHT_COST = 16.0  # BIC charge of one free height (≈ ln of the independent points of a pattern)
LINE = Z_CAP**2 - HEIGHT_COST  # the most one line adds to T: the unit of the evidence
Z_SUPPORT = 4.0  # a reflection with z at least this supports the call
SCALE_STEP = 0.0005
SCALE_COVERAGE = (0.98, 1.02)  # the scan covers at least this lattice-scale range
C_OVER_A_RANGE = 0.015  # ± relative change of c/a scanned for phases whose c axis is free
C_OVER_A_COARSE = (-0.01, 0.0, 0.01)
NULL_FACTORS = (0.89, 0.93, 1.07, 1.11)  # look-elsewhere null: the same scan 7 and 11 % off
NULL_STRIDE = 2  # the null windows are scanned at every second lattice step
POSITION_TOLERANCE = 0.15  # FWHM: a line may sit this far from its peak in the scan
POSITION_WIDTH = 1  # index of WIDTHS_Q: the widest filter line positions are read from
ZERO_SIGMA = 0.001  # Å⁻¹: prior on the zero shift (in Q) of the position fit (a 1D file's origin)
ZERO_SIGMA_CALIBRATED = 0.0002  # Å⁻¹: the same for a frame integrated with its calibrated .poni
POSITION_REACH = 0.25  # FWHM: a line takes the peak position within this of its prediction
AMBIGUITY = 2.0  # lines: scan cells whose T is this many LINEs below the best are plausible too
POWDER_CAP = 10.0  # z: a line's most weight in the powder fit
Z_CLEAN = 5.0  # a clean line: this significant, on no other evident phase's line
N_STRONG = 3  # the strongest lines a present phase cannot lack all of
Z_ABSENT = 3.0  # a line under this z is absent
OWNER_EVIDENCE = 3.0  # a phase this evident takes its supporting lines from the others
CLAIM_REACH = 1.0  # FWHM: how far around its supporting lines a phase takes the pattern
MIN_C_SHARE_SPREAD = 0.05  # c is fitted only where the lines used differ this much in c share
LOCAL_REACH = (6, 12)  # SCALE_STEPs: the local scan's half-width in a, and in c/a where c is free
CELL_SEPARATION = 0.002  # relative: a cell this far from the best is another assignment
PLACING_WIDTHS = (1, 2, 3)  # indices of WIDTHS_Q the local scan places cells at
PEAK_LAGS = (1, 2)  # a line is compared for a shared peak with the lines this many before it


@dataclass(frozen=True)
class PhaseLines:
    """A phase's reflections for the check: Q at the reference cell, the c-axis share of each Q²."""

    name: str
    hkl: tuple[tuple[int, ...], ...]
    q0: np.ndarray  # Å⁻¹ at the reference cell
    c_frac: np.ndarray  # cos² of the angle to c* (0 where the c axis is not free)
    intensity: np.ndarray  # relative, strongest = 100
    a0: float
    c0: float
    free_c: bool  # c/a refined
    scale_range: tuple[float, float]

    @classmethod
    def build(cls, phase: Phase, grid: QGrid) -> PhaseLines:
        """The strongest reflections of ``phase`` that can fall on ``grid``."""
        lo, hi = phase.priors.lattice_range
        lo, hi = min(lo, SCALE_COVERAGE[0]), max(hi, SCALE_COVERAGE[1])
        refl = phase.reflections(None, q_max=grid.q_max / lo * 1.02)
        ok = (refl.q >= grid.q_min / hi * 0.98) & (refl.intensity >= MIN_INTENSITY)
        idx = np.flatnonzero(ok)[np.argsort(-refl.intensity[ok], kind="stable")][:N_REFLECTIONS]
        idx = np.sort(idx)
        cell = phase.cell
        free_c = (
            abs(cell[3] - 90) < 1e-3 and abs(cell[4] - 90) < 1e-3 and abs(cell[2] - cell[0]) > 1e-3
        )
        hkl = tuple(refl.hkl[i] for i in idx)
        l_index = np.array([h[-1] for h in hkl], dtype=float)
        c_frac = (l_index * refl.d[idx] / cell[2]) ** 2 if free_c else np.zeros(idx.size)
        return cls(
            phase.name,
            hkl,
            refl.q[idx],
            np.clip(c_frac, 0.0, 1.0),
            refl.intensity[idx],
            float(cell[0]),
            float(cell[2]),
            bool(free_c),
            (float(lo), float(hi)),
        )

    def positions(self, sa: np.ndarray, sc: np.ndarray, dtype: type = np.float64) -> np.ndarray:
        """Reflection Q (..., K) for a- and c-axis scales ``sa``, ``sc`` of any shape, in ``dtype``
        (float32 for the local scan's many cells)."""
        sa, sc = (np.asarray(s, dtype)[..., None] for s in (sa, sc))
        q0: np.ndarray = self.q0.astype(dtype)
        c_frac: np.ndarray = self.c_frac.astype(dtype)
        return np.asarray(q0 * np.sqrt((1 - c_frac) / sa**2 + c_frac / sc**2))


@dataclass(frozen=True)
class Refinement:
    """One phase refined against a batch of patterns (arrays over the batch, ``(B,)`` unless noted)."""

    lines: PhaseLines
    evidence: (
        np.ndarray
    )  # lines beyond the look-elsewhere null (module notes); NaN: no line on data
    powder: (
        np.ndarray
    )  # z of one common height for all lines (a powder's intensities) over its null
    stat: np.ndarray  # T at the best cell
    null: np.ndarray  # the null's NULL_QUANTILE
    width: np.ndarray  # index into WIDTHS_Q
    scale_a: np.ndarray
    scale_c: np.ndarray
    scale_a_err: np.ndarray
    scale_c_err: np.ndarray
    zero: np.ndarray  # Å⁻¹
    z: np.ndarray  # (B, K) reflection significance at the refined cell
    q: np.ndarray  # (B, K) reflection Q at the refined cell (zero included)
    strong_absent: np.ndarray  # a strongest line on another phase's, the others absent
    clean: np.ndarray  # lines at z ≥ Z_CLEAN on unclaimed data, one per peak
    lent: np.ndarray | None = None  # evidence lost to the lines of other evident phases

    @property
    def support(self) -> np.ndarray:
        """(B, K) bool: the reflections that support the phase."""
        return self.z >= Z_SUPPORT

    @property
    def a(self) -> np.ndarray:
        return self.lines.a0 * self.scale_a

    @property
    def c(self) -> np.ndarray:
        return self.lines.c0 * self.scale_c

    @property
    def fwhm(self) -> np.ndarray:
        return np.asarray(np.asarray(WIDTHS_Q)[self.width])

    @property
    def in_range(self) -> np.ndarray:
        """(B,) bool: the refined cell lies in the phase's range: its lattice scale (the cube root
        of the volume ratio, ``(sa² sc)^⅓`` where c is free) within the prior's range, and c/a
        within :data:`C_OVER_A_RANGE`; a cell beyond it is another phase's. (The a scale alone
        leaves the range at its edges whenever c/a moves: a cell 2 % larger with c/a −0.3 % has an
        a scale 2.1 % larger.)"""
        lo, hi = self.lines.scale_range
        mean = np.cbrt(self.scale_a**2 * self.scale_c) if self.lines.free_c else self.scale_a
        ok = (mean >= lo) & (mean <= hi)
        return np.asarray(ok & (np.abs(self.scale_c / self.scale_a - 1) <= C_OVER_A_RANGE))


def significance(residual: np.ndarray, coverage: np.ndarray, grid: QGrid) -> np.ndarray:
    """``z`` maps ``(B, W, G)``: the background-removed ``residual`` (B, G) smoothed at each of
    :data:`WIDTHS_Q`, less its median, in units of its noise; 0 where not covered.

    The noise is read from differences of the smoothed pattern one FWHM apart (nearly independent
    for noise, however correlated from bin to bin; peaks are few, so the median ignores them, and
    background left over, wider than a peak, cancels in them)."""
    res = np.where(coverage, residual, 0.0).astype(np.float32)
    out = np.empty((res.shape[0], len(WIDTHS_Q), res.shape[1]), np.float32)
    for w, fwhm in enumerate(WIDTHS_Q):
        sigma = fwhm / 2.3548 / grid.step
        smooth = gaussian_filter1d(res, sigma, axis=1, mode="constant")
        lag = max(2, int(round(fwhm / grid.step)))
        med = _covered_median(smooth, coverage)
        valid = coverage[:, lag:] & coverage[:, :-lag]
        diff = np.abs(smooth[:, lag:] - smooth[:, :-lag])
        noise = _covered_median(diff, valid) / (0.6745 * np.sqrt(2.0))
        # a noise-free pattern (a rendered peak table) reads no noise: z then tops out at 1e6
        scale = np.abs(smooth).max(axis=1, keepdims=True)
        noise = np.maximum(noise, 1e-6 * scale + 1e-30)
        out[:, w] = np.where(coverage, (smooth - med) / noise, 0.0)
    return out


def _covered_median(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Median of each row of ``x`` over its ``valid`` points, as a column (B, 1); 0 for a row
    without any (a pattern with no data on the grid)."""
    n = valid.sum(axis=1)
    ranked = np.sort(np.where(valid, x, np.inf), axis=1)
    median = np.take_along_axis(ranked, (np.maximum(n - 1, 0) // 2)[:, None], axis=1)
    return np.where(n[:, None] > 0, median, 0.0)


def peak_index(zmaps: np.ndarray, grid: QGrid, reach: float | None = None) -> np.ndarray:
    """For each point of ``zmaps`` (B, W, G): the grid index of the nearest local maximum of z that
    reaches :data:`Z_SUPPORT` within :data:`POSITION_TOLERANCE` FWHM (or within ``reach`` Å⁻¹ at
    every width), else G; one more column, G, for positions off the grid. A line is fitted where
    the pattern has a peak near it, not on the wing of a strong foreign peak, and one peak serves
    one line."""
    n = zmaps.shape[-1]
    inner = zmaps[..., 1:-1]
    top = np.zeros(zmaps.shape, bool)
    top[..., 1:-1] = (inner >= zmaps[..., :-2]) & (inner > zmaps[..., 2:]) & (inner >= Z_SUPPORT)
    at = np.arange(n, dtype=np.int32)
    left = np.maximum.accumulate(np.where(top, at, -(10**6)), axis=-1)
    right = np.flip(np.minimum.accumulate(np.flip(np.where(top, at, 10**6), -1), axis=-1), -1)
    near = np.where(at - left <= right - at, left, right)
    reaches = [POSITION_TOLERANCE * f for f in WIDTHS_Q] if reach is None else [reach]
    tol = np.array([max(1, round(r / grid.step)) for r in reaches])
    ids = np.where(np.abs(near - at) <= tol[:, None], near, n).astype(np.int32)
    return np.concatenate([ids, np.full((*ids.shape[:-1], 1), n, np.int32)], axis=-1)


def one_line_per_peak(ids: np.ndarray, axis: int = -1) -> np.ndarray:
    """Which lines count (bool, the shape of ``ids``): a line (along ``axis``, in Q order) that
    lands on the same peak (``ids``) as one of the :data:`PEAK_LAGS` lines just before it does not;
    two reflections on one peak are one line."""
    before = (slice(None),) * (axis % ids.ndim)
    counts = np.ones(ids.shape, bool)
    for lag in PEAK_LAGS:
        later, earlier = (*before, slice(lag, None)), (*before, slice(None, -lag))
        counts[later] &= ids[later] != ids[earlier]
    return counts


def grid_points(q: np.ndarray, grid: QGrid) -> np.ndarray:
    """The nearest grid index (int32) of each Q, computed in Q's precision; ``grid.n`` (the padding
    column of :func:`_padded` maps) off the grid."""
    q = np.asarray(q)
    kind = q.dtype.type
    idx = np.rint((q - kind(grid.q_min)) / kind(grid.step)).astype(np.int32)
    return np.asarray(np.where((idx >= 0) & (idx < grid.n), idx, np.int32(grid.n)))


def _line_gain(
    ids: np.ndarray, gains: np.ndarray, idx: np.ndarray, shares: list[tuple[int, np.ndarray]]
) -> np.ndarray:
    """T at each cell (B, W, C): the gain of the peak each reflection (grid points ``idx``, (C, K),
    from :func:`grid_points`) lands on, one line per peak (``shares``: :func:`_may_share` of
    ``idx``). ``ids``, ``gains``: (G+1, B, W) peak index and that peak's gain at each point
    (:class:`PeakMaps`)."""
    found = gains[idx]  # (C, K, B, W): each gather a contiguous row
    for lag, later in shares:
        found[:, later] *= ids[idx[:, later]] != ids[idx[:, later - lag]]
    return np.moveaxis(found.sum(1), 0, -1)


def peak_span(grid: QGrid) -> int:
    """Grid points: the farthest apart two points can be that take the same peak of
    :func:`peak_index` (twice its widest reach)."""
    return 2 * max(1, round(POSITION_TOLERANCE * max(WIDTHS_Q) / grid.step))


def _may_share(points: np.ndarray, span: int) -> list[tuple[int, np.ndarray]]:
    """For each of :data:`PEAK_LAGS`: the lines k (last axis of ``points``, grid
    points of the lines at each cell) that may take the same peak as line k − lag at some cell,
    those within ``span`` points of it somewhere. Lines further apart never share a peak (both
    without one, they gain nothing), so only these need their peaks compared."""
    out = []
    for lag in (lag for lag in PEAK_LAGS if points.shape[-1] > lag):
        gap = np.abs(points[..., lag:] - points[..., :-lag]).reshape(-1, points.shape[-1] - lag)
        out.append((lag, np.flatnonzero(gap.min(0, initial=span + 1) <= span) + lag))
    return out


def _gain(z: np.ndarray) -> np.ndarray:
    """Each line's gain: ``min(z, Z_CAP)² − HEIGHT_COST`` where positive, else 0 (height dropped)."""
    zc = np.clip(z, 0.0, Z_CAP)
    zc *= zc
    zc -= HEIGHT_COST
    return np.asarray(np.maximum(zc, 0.0, out=zc))


def _padded(zmap: np.ndarray) -> np.ndarray:
    """``zmap`` (..., G) with a column of zeros at the end, where :func:`grid_points` puts Q off
    the grid."""
    return np.concatenate([zmap, np.zeros((*zmap.shape[:-1], 1), zmap.dtype)], axis=-1)


def scan_cells(
    lines: PhaseLines, stride: int = 1, ratios: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(sa, sc) of cells over the phase's lattice range in steps of ``stride`` ×
    :data:`SCALE_STEP`, at relative c/a changes ``ratios`` (default: the coarse scan's
    :data:`C_OVER_A_COARSE`) where c is free."""
    lo, hi = lines.scale_range
    s = np.arange(lo, hi + SCALE_STEP / 2, stride * SCALE_STEP)
    ratios = np.asarray(C_OVER_A_COARSE if ratios is None else ratios, float)
    ratios = ratios if lines.free_c else np.zeros(1)
    return np.repeat(s, ratios.size), np.repeat(s, ratios.size) * (1 + np.tile(ratios, s.size))


@dataclass(frozen=True)
class PeakMaps:
    """A batch's significance maps and, at each point, the peak a line there would take and its gain."""

    grid: QGrid
    z: np.ndarray  # (B, W, G), from :func:`significance`
    ids: np.ndarray  # (G+1, B, W), from :func:`peak_index`, point-major (a line's gather is a row)
    gains: np.ndarray  # (G+1, B, W): the capped, charged gain of that peak (0: none)
    usable: np.ndarray  # (B, G): covered and not claimed by another phase
    covered: np.ndarray  # (B, G): where the pattern has data
    zero_sigma: np.ndarray  # (B,) Å⁻¹: the prior on each pattern's zero shift

    @classmethod
    def build(
        cls,
        residual: np.ndarray,
        coverage: np.ndarray,
        grid: QGrid,
        calibrated: np.ndarray | None = None,
    ) -> PeakMaps:
        """Maps of background-removed patterns ``residual`` (B, G) on ``grid``; ``calibrated``
        (B,) marks patterns integrated with a calibrated geometry (a tighter zero prior)."""
        return cls.from_significance(
            significance(residual, coverage, grid), coverage, grid, calibrated
        )

    @classmethod
    def from_significance(
        cls,
        z: np.ndarray,
        coverage: np.ndarray,
        grid: QGrid,
        calibrated: np.ndarray | None = None,
    ) -> PeakMaps:
        """Maps of significance ``z`` (B, W, G) already computed (:func:`significance`)."""
        ids = peak_index(z, grid)
        gains = _gain(np.take_along_axis(_padded(z), ids, axis=-1))
        known = np.zeros(len(z), bool) if calibrated is None else np.asarray(calibrated, bool)
        zero_sigma = np.where(known, ZERO_SIGMA_CALIBRATED, ZERO_SIGMA)
        ids, gains = (np.ascontiguousarray(np.moveaxis(a, -1, 0)) for a in (ids, gains))
        return cls(grid, z, ids, gains, coverage, coverage, zero_sigma)

    @cached_property
    def supported(self) -> np.ndarray:
        """(W, B·(G+1)): at each point of each width, the peak a line there takes where z there
        reaches :data:`Z_SUPPORT` (else G), flat per width (the local scan's one gather)."""
        peaks = np.where(_padded(self.z) >= Z_SUPPORT, np.moveaxis(self.ids, 0, -1), self.grid.n)
        small = np.int16 if self.grid.n < np.iinfo(np.int16).max else np.int32
        return np.moveaxis(peaks, 1, 0).astype(small).reshape(peaks.shape[1], -1)

    def without(self, claimed: np.ndarray) -> PeakMaps:
        """The maps with the grid points ``claimed`` (B, G) taken out (lines there gain nothing)."""
        out = np.concatenate([claimed, np.zeros((claimed.shape[0], 1), bool)], axis=1).T[..., None]
        return PeakMaps(
            self.grid,
            np.where(claimed[:, None], np.float32(0), self.z),
            np.where(out, self.grid.n, self.ids),
            np.where(out, np.float32(0), self.gains),
            self.usable & ~claimed,
            self.covered,
            self.zero_sigma,
        )


@dataclass(frozen=True)
class Scan:
    """A phase's coarse scan on a grid, the same for every batch (build it once): the cells, their
    lines' grid points, and the powder fit's design matrices, for the scan and each null window."""

    lines: PhaseLines
    grid: QGrid
    sa: np.ndarray  # (C,) a-axis scale of each cell
    sc: np.ndarray  # (C,) c-axis scale
    points: np.ndarray  # (C, K) grid point of each line (:func:`grid_points`)
    null_points: tuple[np.ndarray, ...]  # the same for each of :data:`NULL_FACTORS`
    design: sparse.csr_array  # (C, G) the powder fit's weights (:func:`_design`)
    null_designs: tuple[sparse.csr_array, ...]
    shares: tuple[list[tuple[int, np.ndarray]], ...]  # :func:`_may_share` of points, null_points

    @classmethod
    def build(cls, lines: PhaseLines, grid: QGrid) -> Scan:
        sa, sc = scan_cells(lines)
        na, nc = scan_cells(lines, NULL_STRIDE)
        points = grid_points(lines.positions(sa, sc), grid)
        nulls = tuple(grid_points(lines.positions(na * f, nc * f), grid) for f in NULL_FACTORS)
        weight = (lines.intensity / np.sqrt((lines.intensity**2).sum())).astype(np.float32)
        designs = tuple(_design(at, weight, grid.n) for at in nulls)
        shares = tuple(_may_share(at, peak_span(grid)) for at in (points, *nulls))
        return cls(
            lines, grid, sa, sc, points, nulls, _design(points, weight, grid.n), designs, shares
        )


def refine_phase(maps: PeakMaps, lines: PhaseLines, scan: Scan | None = None) -> Refinement:
    """Refine ``lines`` against every pattern of ``maps``; ``scan``: its :class:`Scan` on the
    maps' grid, built here if not given."""
    if scan is None:
        scan = Scan.build(lines, maps.grid)
    elif scan.lines is not lines or scan.grid != maps.grid:
        raise ValueError(f"the scan is not of {lines.name} on this grid")
    grid, zmaps, ids = maps.grid, maps.z, maps.ids
    n_b = zmaps.shape[0]
    sa, sc = scan.sa, scan.sc
    stat = _line_gain(ids, maps.gains, scan.points, scan.shares[0])  # (B, W, C)
    null = np.mean(
        [
            _line_gain(ids, maps.gains, at, shares).max(-1)
            for at, shares in zip(scan.null_points, scan.shares[1:], strict=True)
        ],
        axis=0,
    )
    powder = _powder_evidence(zmaps, scan)
    best_c = stat.argmax(-1)  # (B, W)
    best = np.take_along_axis(stat, best_c[..., None], -1)[..., 0]
    evidence_w = (best - null) / LINE
    w = evidence_w.argmax(-1)
    rows = np.arange(n_b)
    cell = best_c[rows, w]
    zsel = zmaps[rows, w]  # (B, G)
    on_data = (_gather_rows(zsel, lines.positions(sa[cell], sc[cell]), grid) != 0).any(-1)
    fa, fc, t_local = _local_scan(maps, lines, sa[cell], sc[cell], w)
    t_best = np.maximum(best[rows, w], t_local)
    fine = np.minimum(w, POSITION_WIDTH)  # positions read where neighbouring lines stay apart
    fit = _fit_positions(
        zmaps[rows, fine], grid, lines, fa, fc, np.asarray(WIDTHS_Q)[fine], maps.zero_sigma
    )
    err_a, err_c = _with_ambiguity(stat[rows, w], sa, sc, *fit[:4])
    q = lines.positions(fit[0], fit[1]) + fit[4][:, None]
    z_lines = _gather_rows(zsel, q, grid)
    usable = _gather_rows(maps.usable, q, grid) > 0
    return Refinement(
        lines,
        np.where(on_data, (t_best - null[rows, w]) / LINE, np.nan),
        np.where(on_data, powder, np.nan),
        t_best,
        null[rows, w],
        w,
        fit[0],
        fit[1],
        err_a,
        err_c,
        fit[4],
        z_lines,
        q,
        _strong_absent(lines, z_lines, usable, _gather_rows(maps.covered, q, grid) > 0),
        _clean_lines(q, z_lines, usable, np.asarray(WIDTHS_Q)[w]),
    )


def _with_ambiguity(
    stat: np.ndarray,
    sa: np.ndarray,
    sc: np.ndarray,
    fa: np.ndarray,
    fc: np.ndarray,
    err_a: np.ndarray,
    err_c: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The scale uncertainties (B,) with the ambiguity of the scan added in quadrature: half the
    farthest distance from the fitted (``fa``, ``fc``) to a scanned cell (``sa``, ``sc``) whose
    statistic (``stat``, (B, C)) lies within :data:`AMBIGUITY` lines of the best. In patterns dense
    with foreign lines the scan's best basin is often not the true one, which the position fit
    alone cannot know (its errors read 2–4× too small on the development families). A NaN
    uncertainty (too few lines to fit) stays NaN."""
    near = stat >= stat.max(-1, keepdims=True) - AMBIGUITY * LINE
    spread_a = np.where(near, np.abs(sa[None] - fa[:, None]), 0.0).max(-1) / 2
    spread_c = np.where(near, np.abs(sc[None] - fc[:, None]), 0.0).max(-1) / 2
    return np.hypot(err_a, spread_a), np.hypot(err_c, spread_c)  # NaN stays: too few lines


def _powder_evidence(zmaps: np.ndarray, scan: Scan) -> np.ndarray:
    """The fit of one height for all lines in the reference intensities (a powder): at each cell
    of the scan the intensity-weighted z of the lines (each capped at :data:`POWDER_CAP`; the
    scan's design matrices), best cell over the mean of the null windows' best, at the best width
    (B,)."""
    n_b, n_w, n_g = zmaps.shape
    capped = np.clip(zmaps, -POWDER_CAP, POWDER_CAP).reshape(-1, n_g).T  # (G, B·W)

    def best(design: sparse.csr_array) -> np.ndarray:
        return np.asarray((design @ capped).max(0)).reshape(n_b, n_w)

    null = np.mean([best(d) for d in scan.null_designs], axis=0)
    return np.asarray((best(scan.design) - null).max(-1))  # (B, W) → (B,)


def _design(idx: np.ndarray, weight: np.ndarray, n_grid: int) -> sparse.csr_array:
    """(C, G) sparse: row c sums ``weight`` (K,) at the grid points ``idx[c]`` (from
    :func:`grid_points`; the padding column ``n_grid`` dropped, it holds no data)."""
    cells = np.broadcast_to(np.arange(idx.shape[0])[:, None], idx.shape)
    on = idx < n_grid
    values = np.broadcast_to(weight, idx.shape)[on]
    return sparse.csr_array((values, (cells[on], idx[on])), shape=(idx.shape[0], n_grid))


def _clean_lines(q: np.ndarray, z: np.ndarray, usable: np.ndarray, fwhm: np.ndarray) -> np.ndarray:
    """(B,) the lines at :data:`Z_CLEAN` or more on unclaimed data, lines closer than half a FWHM
    to the previous one counted once."""
    order = np.argsort(q, axis=1)
    qs = np.take_along_axis(q, order, 1)
    ok = np.take_along_axis((z >= Z_CLEAN) & usable, order, 1)
    apart = np.ones(q.shape, bool)
    apart[:, 1:] = np.diff(qs, axis=1) >= 0.5 * fwhm[:, None]
    return np.asarray((ok & apart).sum(axis=1))


def _strong_absent(
    lines: PhaseLines, z: np.ndarray, usable: np.ndarray, covered: np.ndarray
) -> np.ndarray:
    """(B,) bool: a phase resting on another's line. Of its :data:`N_STRONG` most intense lines on
    the data, at least one lies on a line of another evident phase, and none of the others reaches
    :data:`Z_ABSENT` (at least one of them checked)."""
    order = np.argsort(-lines.intensity, kind="stable")
    on_data = covered[:, order]
    top = on_data & (np.cumsum(on_data, axis=1) <= N_STRONG)
    free = top & usable[:, order]
    seen = (free & (z[:, order] >= Z_ABSENT)).any(axis=1)
    shared = (top & ~usable[:, order]).any(axis=1)
    return np.asarray(shared & free.any(axis=1) & ~seen)


def _gather_rows(zsel: np.ndarray, q: np.ndarray, grid: QGrid) -> np.ndarray:
    """``zsel`` (B, G) at Q (B, K), row by row."""
    idx = np.rint(grid.index(q)).astype(np.intp)
    ok = (idx >= 0) & (idx < grid.n)
    return np.where(ok, np.take_along_axis(zsel, np.clip(idx, 0, grid.n - 1), axis=1), 0.0)


def _local_scan(
    maps: PeakMaps, lines: PhaseLines, sa: np.ndarray, sc: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The best (sa, sc) per pattern on a fine grid around the coarse scan's cell (:data:`LOCAL_REACH`
    steps, the c/a steps between the coarse values included), and the statistic T there at the
    evidence's filter ``w`` (B,).

    At each filter of :data:`PLACING_WIDTHS` a cell scores the lines that support it (z ≥
    :data:`Z_SUPPORT` at their exact positions, one line per peak): counting lines, not summing
    their z, lets many moderate lines of a few-crystal phase place its cell rather than its few
    strongest. The cell is taken at the filter where the placement is least ambiguous: where its
    best cell has the most supporting lines more than the best cell :data:`CELL_SEPARATION` or
    further from it (another assignment of the c-sensitive lines), the evidence's filter winning
    ties; there the summed z breaks the ties between cells. A filter narrower than a phase's lines
    splits them, a wider one merges them with their neighbours: the margin tells which reads this
    pattern's lines apart (cells within 0.2 % 52.1 → 54.9 % on the development families, the
    few-crystal ones +5–8 points; the narrowest filter, 0.006 Å⁻¹, placed them worse)."""
    grid, n_b, widths = maps.grid, sa.size, list(PLACING_WIDTHS)
    da = np.arange(-LOCAL_REACH[0], LOCAL_REACH[0] + 1) * SCALE_STEP
    dc = np.arange(-LOCAL_REACH[1], LOCAL_REACH[1] + 1) * SCALE_STEP if lines.free_c else [0.0]
    ga = np.repeat(sa[:, None] + da, len(dc), axis=1)  # (B, C): c/a steps within each a step
    gc = ga * (sc / sa)[:, None] + np.tile(dc, da.size) if lines.free_c else ga
    idx = grid_points(lines.positions(ga, gc, np.float32), grid)  # (B, C, K)
    flat = (idx + (np.arange(n_b, dtype=np.int32) * (grid.n + 1))[:, None, None]).ravel()
    got = np.stack([maps.supported[k].take(flat) for k in widths]).reshape(-1, *idx.shape)
    counts = got < grid.n  # (W', B, C, K): supporting lines, one per peak
    for lag, later in _may_share(idx, peak_span(grid)):
        counts[..., later] &= got[..., later] != got[..., later - lag]
    supporting = np.count_nonzero(counts, axis=-1).transpose(1, 0, 2)  # (B, W', C)
    first = supporting.argmax(-1)  # (B, W')
    ba, bc = np.take_along_axis(ga, first, 1), np.take_along_axis(gc, first, 1)
    apart = (np.abs(ga[:, None] / ba[..., None] - 1) >= CELL_SEPARATION) | (
        np.abs(gc[:, None] / bc[..., None] - 1) >= CELL_SEPARATION
    )
    margin = supporting.max(-1) - np.where(apart, supporting, 0).max(-1)
    margin = margin + 0.5 * (np.array(widths) == w[:, None])  # ties: the evidence's width
    at, pick = np.arange(n_b), margin.argmax(-1)
    chosen = counts[pick, at]  # (B, C, K): the summed z there breaks the ties of the count
    z = _padded(maps.z[at, np.array(widths)[pick]]).take(flat).reshape(idx.shape)
    summed = np.where(chosen, np.minimum(z, 10 * Z_CAP), 0.0).sum(-1)
    cell = (supporting[at, pick] * (summed.max() + 1.0) + summed).argmax(-1)
    fa, fc = ga[at, cell], gc[at, cell]
    points = grid_points(lines.positions(fa, fc), grid)  # (B, K): T there, at the width w
    peaks = np.take_along_axis(maps.ids[:, at, w].T, points, 1)
    gain = np.take_along_axis(maps.gains[:, at, w].T, points, 1)
    return fa, fc, np.where(one_line_per_peak(peaks), gain, 0.0).sum(-1)


def _fit_positions(
    zsel: np.ndarray,
    grid: QGrid,
    lines: PhaseLines,
    sa: np.ndarray,
    sc: np.ndarray,
    fwhm: np.ndarray,
    zero_sigma: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weighted Gauss–Newton fit of (sa, sc, zero) to the supporting lines' peak positions.

    Each supporting reflection's position is the sub-grid maximum of ``z`` near its predicted Q,
    with σ ≈ 0.6 FWHM / z; the zero has a Gaussian prior of ``zero_sigma`` (B,) Å⁻¹. Returns sa,
    sc, their standard errors, and the zero shift (Å⁻¹)."""
    n_b = sa.size
    pred = lines.positions(sa, sc)  # (B, K)
    reach = np.maximum(np.rint(POSITION_REACH * fwhm / grid.step).astype(int), 1)  # (B,)
    offs = np.arange(-int(reach.max()), int(reach.max()) + 1)
    centre = np.rint(grid.index(pred)).astype(np.intp)
    win = centre[..., None] + offs  # (B, K, O)
    inside = (win >= 1) & (win < grid.n - 1) & (np.abs(offs) <= reach[:, None, None])
    flat = np.clip(win, 1, grid.n - 2).reshape(n_b, -1)
    zw = np.where(inside, np.take_along_axis(zsel, flat, 1).reshape(win.shape), -np.inf)
    k = zw.argmax(-1)
    at = np.take_along_axis(win, k[..., None], -1)[..., 0].clip(1, grid.n - 2)
    z_peak = np.take_along_axis(zw, k[..., None], -1)[..., 0]
    left = np.take_along_axis(zsel, at - 1, 1)
    mid = np.take_along_axis(zsel, at, 1)
    right = np.take_along_axis(zsel, at + 1, 1)
    curv = left - 2 * mid + right
    frac = np.where(curv < 0, 0.5 * (left - right) / np.where(curv < 0, curv, -1), 0.0)
    q_obs = grid.q_min + (at + np.clip(frac, -0.5, 0.5)) * grid.step
    shared = np.zeros(at.shape, bool)  # two lines on one peak: neither places the cell
    shared[:, 1:] |= at[:, 1:] == at[:, :-1]
    shared[:, :-1] |= at[:, 1:] == at[:, :-1]
    use = (z_peak >= Z_SUPPORT) & np.isfinite(z_peak) & ~shared
    weight = np.where(use, (np.minimum(z_peak, 3 * Z_CAP) / (0.6 * fwhm[:, None])) ** 2, 0.0)
    return _gauss_newton(lines, sa, sc, q_obs, weight, zero_sigma)


def _gauss_newton(
    lines: PhaseLines,
    sa: np.ndarray,
    sc: np.ndarray,
    q_obs: np.ndarray,
    weight: np.ndarray,
    zero_sigma: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Three Gauss–Newton steps on (1/sa², 1/sc², zero), batched, the zero with a prior of
    ``zero_sigma`` (B,); patterns with too few lines keep the scan's cell (uncertainty: NaN), and
    so do those whose lines cannot tell c from a: all with one c share (a platy phase lying flat
    shows only its hk0 lines), where the fit has no solution."""
    n_par = 3 if lines.free_c else 2
    used = weight > 0
    n_used = used.sum(1)
    ok = n_used >= n_par + 1
    if lines.free_c:
        highest = np.where(used, lines.c_frac, -np.inf).max(1)
        ok &= highest - np.where(used, lines.c_frac, np.inf).min(1) >= MIN_C_SHARE_SPREAD
    u, v, zero = 1 / sa**2, 1 / sc**2, np.zeros_like(sa)
    prior = np.zeros((sa.size, n_par, n_par))
    prior[:, -1, -1] = 1 / zero_sigma**2
    cov = np.full((sa.size, n_par, n_par), np.nan)
    for _ in range(3):
        root = np.sqrt(
            np.maximum((1 - lines.c_frac) * u[:, None] + lines.c_frac * v[:, None], 1e-9)
        )
        model = lines.q0 * root + zero[:, None]
        du = lines.q0 * (1 - lines.c_frac) / (2 * root)
        dv = lines.q0 * lines.c_frac / (2 * root)
        cols = [du, dv] if lines.free_c else [du + dv]
        jac = np.stack([*cols, np.ones_like(du)], axis=-1)  # (B, K, P)
        jtw = jac * weight[..., None]
        normal = np.einsum("bkp,bkq->bpq", jtw, jac) + prior
        rhs = np.einsum("bkp,bk->bp", jtw, q_obs - model) - prior[:, -1] * zero[:, None]
        normal[~ok] = np.eye(n_par)
        rhs[~ok] = 0.0
        step = np.linalg.solve(normal, rhs[..., None])[..., 0]
        u = u + step[:, 0]
        v = v + (step[:, 1] if lines.free_c else step[:, 0])
        zero = zero + step[:, -1]
        cov = np.linalg.inv(normal)
    resid = q_obs - (
        lines.q0 * np.sqrt((1 - lines.c_frac) * u[:, None] + lines.c_frac * v[:, None])
        + zero[:, None]
    )
    chi2 = (weight * resid**2).sum(1) / np.maximum(n_used - n_par, 1)
    cov = cov * np.maximum(chi2, 1.0)[:, None, None]
    u, v = np.where(ok, u, 1 / sa**2), np.where(ok, v, 1 / sc**2)
    new_a, new_c = 1 / np.sqrt(u), 1 / np.sqrt(v)
    # d(1/sqrt(u)) = -0.5 u^{-3/2} du
    err_a = np.where(ok, 0.5 * u**-1.5 * np.sqrt(cov[:, 0, 0]), np.nan)
    err_c = np.where(
        ok,
        0.5 * v**-1.5 * np.sqrt(cov[:, 1 if lines.free_c else 0, 1 if lines.free_c else 0]),
        np.nan,
    )
    return new_a, new_c, err_a, err_c, np.where(ok, zero, 0.0)


def fit_profile(
    residual: np.ndarray, coverage: np.ndarray, grid: QGrid, q: np.ndarray, fwhm: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative heights (K,) of Gaussian lines at ``q`` (FWHM ``fwhm``, one per line or one for
    all) fitted to one pattern's ``residual`` (G,) where covered (NNLS), and the fitted curve (G,)."""
    x = grid.values
    width = np.broadcast_to(np.asarray(fwhm, dtype=float), q.shape)
    inside = (q >= grid.q_min) & (q <= grid.q_max)
    design = np.exp(-4 * np.log(2) * ((x[:, None] - q[None, inside]) / width[None, inside]) ** 2)
    heights = np.zeros(q.size)
    if inside.any() and coverage.any():
        heights[inside] = nnls(design[coverage], residual[coverage], maxiter=50 * q.size)[0]
    return heights, design @ heights[inside]


def claims(refinements: list[Refinement], grid: QGrid, owner: np.ndarray) -> np.ndarray:
    """(P, B, G) bool: for each phase, the grid points the supporting lines of the *other* phases
    that ``owner`` (P, B) marks take (±CLAIM_REACH FWHM around each)."""
    n_p, n_b = len(refinements), owner.shape[1]
    taken = np.zeros((n_p, n_b, grid.n + 1), np.int32)
    for k, r in enumerate(refinements):
        half = np.rint(CLAIM_REACH * r.fwhm / grid.step).astype(int)[:, None]  # (B, 1)
        centre = np.rint(grid.index(r.q)).astype(int)
        use = r.support & owner[k][:, None]
        lo = np.clip(np.where(use, centre - half, grid.n), 0, grid.n)
        hi = np.clip(np.where(use, centre + half + 1, grid.n), 0, grid.n)
        rows = np.repeat(np.arange(n_b), centre.shape[1])
        np.add.at(taken[k], (rows, lo.ravel()), 1)
        np.add.at(taken[k], (rows, hi.ravel()), -1)
    covered = np.cumsum(taken, axis=-1)[..., : grid.n] > 0  # (P, B, G)
    total = covered.sum(0)
    return np.asarray((total - covered) > 0)


def refine_phases(
    maps: PeakMaps, phases: list[PhaseLines], scans: list[Scan] | None = None
) -> list[Refinement]:
    """Refine every phase (``scans``: their :class:`Scan` on the maps' grid, built here if not
    given); then again with the lines of each phase whose evidence reaches
    :data:`OWNER_EVIDENCE` taken from the others (a line two phases share supports neither)."""
    if scans is None:
        scans = [Scan.build(lines, maps.grid) for lines in phases]
    if len(scans) != len(phases):
        raise ValueError(f"{len(scans)} scans for {len(phases)} phases")
    first = [refine_phase(maps, lines, s) for lines, s in zip(phases, scans, strict=True)]
    owner = np.stack([np.nan_to_num(r.evidence) >= OWNER_EVIDENCE for r in first])
    if not owner.any():
        return [replace(r, lent=np.zeros_like(r.stat)) for r in first]
    taken = claims(first, maps.grid, owner)
    out = []
    for k, lines in enumerate(phases):
        second = (
            refine_phase(maps.without(taken[k]), lines, scans[k]) if taken[k].any() else first[k]
        )
        lent = np.nan_to_num(first[k].evidence) - np.nan_to_num(second.evidence)
        out.append(replace(second, lent=np.maximum(lent, 0.0)))
    return out
