"""The :class:`Pattern` type: a measured 1D diffraction pattern and its conversion to the model's Q grid."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import PatternError
from .grid import QGrid
from .units import UNITS, to_q

GAP_FACTOR = 5.0  # a step in x this many times the typical one is a gap (see gap_steps)


@dataclass
class Pattern:
    """Intensity ``y`` against ``x`` in ``unit`` (see :data:`xrdmtl.physics.units.UNITS`).

    ``wavelength`` is in Å (needed only when ``unit`` is ``2th_deg``); ``source`` names where the
    pattern came from (a path, or ``path::index`` for a frame in a stack) and ``meta`` keeps what the
    reader found in the file's header.
    """

    x: np.ndarray
    y: np.ndarray
    unit: str = "2th_deg"
    wavelength: float | None = None
    source: str = "<memory>"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.x = np.asarray(self.x, dtype=float)
        self.y = np.asarray(self.y, dtype=float)
        validate_xy(self.x, self.y, self.source)
        if self.unit not in UNITS:
            raise PatternError(
                f"unknown x unit {self.unit!r} (known: {', '.join(UNITS)})", self.source
            )
        if self.wavelength is not None and not (0.01 < self.wavelength < 10.0):
            raise PatternError(f"implausible wavelength {self.wavelength} Å", self.source)

    @property
    def q(self) -> np.ndarray:
        """x converted to Q (Å⁻¹), ascending order not guaranteed (d-spacing runs backwards)."""
        if self.unit == "2th_deg" and self.wavelength is None:
            raise PatternError(
                "x is 2θ but no wavelength is known: give --wavelength (Å)", self.source
            )
        return to_q(self.x, self.unit, self.wavelength)

    def on_grid(self, grid: QGrid) -> tuple[np.ndarray, np.ndarray]:
        """Intensity on ``grid`` (float32) and its coverage mask (True where the pattern has data;
        False outside its range and inside its gaps, see :func:`gap_steps`)."""
        return resample(self.q, self.y, grid)

    def gaps(self) -> list[tuple[float, float]]:
        """The gaps in x (see :func:`gap_steps`) as (x before, x after) pairs, in x order."""
        return [(float(self.x[i]), float(self.x[i + 1])) for i in gap_steps(self.q)]


def validate_xy(x: np.ndarray, y: np.ndarray, source: str = "<memory>") -> None:
    """Raise :class:`PatternError` unless x, y are finite, matching, strictly monotonic and non-trivial."""
    if x.ndim != 1 or y.ndim != 1 or x.shape != y.shape:
        raise PatternError(
            f"x and y must be 1D arrays of one length, got {x.shape} and {y.shape}", source
        )
    if x.size < 10:
        raise PatternError(f"only {x.size} data points (need at least 10)", source)
    bad = ~(np.isfinite(x) & np.isfinite(y))
    if bad.any():
        raise PatternError(
            f"{int(bad.sum())} NaN or infinite values (first at row {int(np.argmax(bad))})", source
        )
    dx = np.diff(x)
    if not ((dx > 0).all() or (dx < 0).all()):
        kind = "duplicate" if (dx == 0).any() else "non-monotonic"
        raise PatternError(
            f"{kind} x values (first at row {int(np.argmax(dx <= 0 if dx[0] > 0 else dx >= 0)) + 1})",
            source,
        )
    if np.ptp(y) == 0:
        raise PatternError("intensity is constant (an empty or all-zero pattern)", source)


def gap_steps(v: np.ndarray) -> np.ndarray:
    """Indices ``i`` of the steps ``v[i] → v[i+1]`` of a monotonic axis that are gaps (no data
    between them): longer than :data:`GAP_FACTOR` × the median step *and* than :data:`GAP_FACTOR`
    × the shorter of its two neighbouring steps. The second test keeps an axis whose step grows
    smoothly (equal steps in d seen in Q) free of gaps; the first, a slightly irregular one."""
    dv = np.abs(np.diff(v))
    return gaps_in_steps(dv, float(np.median(dv)) if dv.size else 0.0)


def gaps_in_steps(dv: np.ndarray, median: float) -> np.ndarray:
    """:func:`gap_steps` from the absolute steps ``dv`` and their ``median``, computed once."""
    if dv.size < 3:
        return np.zeros(0, dtype=int)
    padded = np.concatenate(([np.inf], dv, [np.inf]))
    beside = np.minimum(padded[:-2], padded[2:])
    return np.flatnonzero((dv > GAP_FACTOR * median) & (dv > GAP_FACTOR * beside))


def _float32_safe(y: np.ndarray) -> np.ndarray:
    """``y`` scaled by a power of two (exact, and every input channel is scale-free) where its
    magnitude would overflow or underflow float32 (intensities ×1e300 or ×1e-300)."""
    top = float(np.abs(y).max())
    if top == 0.0 or 1e-30 < top < 1e30:
        return y
    return np.asarray(np.ldexp(y, -int(np.frexp(top)[1])))


def resample(q: np.ndarray, y: np.ndarray, grid: QGrid) -> tuple[np.ndarray, np.ndarray]:
    """Area-preserving resampling of (q, y) onto ``grid``: bin averages where the data is finer than
    the grid, linear interpolation where it is coarser. Returns (intensity, coverage); no bin that
    reaches into a gap (:func:`gap_steps`) is covered: a gap is never interpolated across."""
    order = np.argsort(q)
    q, y = q[order], _float32_safe(y[order])
    g = grid.values
    half = grid.step / 2.0
    covered = (g - half >= q[0]) & (g + half <= q[-1])
    dq = np.diff(q)
    median_step = float(np.median(dq))
    gaps = gaps_in_steps(dq, median_step)
    if gaps.size:  # bins overlapping a gap's open interval (q[i], q[i+1]) hold no data
        starts = np.searchsorted(g + half, q[gaps], side="right")
        stops = np.searchsorted(g - half, q[gaps + 1], side="left")
        inside = np.zeros(g.size + 1, dtype=np.int32)
        np.add.at(inside, starts, 1)
        np.add.at(inside, stops, -1)
        covered &= np.cumsum(inside[:-1]) == 0
    # cumulative trapezoid integral of y over q, read at the grid's bin edges
    area = np.concatenate(([0.0], np.cumsum(0.5 * (y[1:] + y[:-1]) * np.diff(q))))
    edges = np.clip(np.concatenate((g - half, g[-1:] + half)), q[0], q[-1])
    binned = np.diff(np.interp(edges, q, area)) / grid.step
    point = np.interp(g, q, y)
    out = binned if median_step < grid.step else point
    out = np.where(covered, out, 0.0).astype(np.float32)
    return out, covered
