"""Physical sanity of a measured pattern: what a reader cannot refuse but a user must hear.

Each check gives a one-line note ("" when all is well); :func:`data_notes` gathers them for a
pattern read against a model's Q grid. They become warnings of the pattern's prediction:

- **gaps** in x (no data, not interpolated, see :func:`~xrdmtl.physics.pattern.gap_steps`) that
  fall inside the grid;
- **mostly negative** intensities: over half below zero with the peaks pointing down (sign-flipped
  data), or over :data:`NEGATIVE_ALONE` below zero whichever way the peaks point;
- **saturated** data: the maximum held by a run of :data:`SATURATED_RUN` points or by
  :data:`SATURATED_COUNT` points in all, standing over :data:`SATURATED_SNR` noise units above the
  median (a detector's flat top; low-count patterns whose maximum repeats by chance are spared);
- **too coarse a step**: the median step in Q over :data:`COARSE_FACTOR` × the grid's step (the
  narrowest peaks the models learn span about two grid steps; at 0.561 Å that is 2θ steps over
  about 0.09°).
"""

from __future__ import annotations

import numpy as np

from .grid import QGrid
from .pattern import Pattern, gaps_in_steps

NEGATIVE_ALONE = 0.9  # fraction of points below zero that is worth a note whatever the peaks do
SATURATED_RUN = 3
SATURATED_COUNT = 5
SATURATED_SNR = 10.0
COARSE_FACTOR = 4.0


def x_range(pattern: Pattern, lo: float, hi: float) -> str:
    """``lo``–``hi`` in the pattern's x unit, as a reader of that file would write it."""
    a, b = sorted((lo, hi))
    if pattern.unit == "2th_deg":
        return f"2θ {a:.2f}–{b:.2f}°"
    if pattern.unit == "d_A":
        return f"d {a:.3f}–{b:.3f} Å"
    return f"Q {a:.3f}–{b:.3f} {'Å⁻¹' if pattern.unit == 'q_A^-1' else 'nm⁻¹'}"


def gap_note(pattern: Pattern, q: np.ndarray, gaps: np.ndarray, grid: QGrid) -> str:
    """The gaps (step indices ``gaps`` of ``pattern.x``, whose Q is ``q``) inside the grid's Q
    range, or ""."""
    shown = [
        x_range(pattern, float(pattern.x[i]), float(pattern.x[i + 1]))
        for i in gaps
        if max(q[i], q[i + 1]) > grid.q_min and min(q[i], q[i + 1]) < grid.q_max
    ]
    if not shown:
        return ""
    return f"no data at {', '.join(shown)} (a gap in x: not interpolated, not counted as covered)"


def negative_note(y: np.ndarray) -> str:
    """Mostly negative intensities, or ""."""
    below = float((y < 0).mean())
    if below <= 0.5:
        return ""
    med = float(np.median(y))
    if med - float(y.min()) > float(y.max()) - med:
        return (
            f"intensities mostly negative ({below:.0%} below 0), peaks pointing down: sign-flipped?"
        )
    if below > NEGATIVE_ALONE:
        return f"intensities mostly negative ({below:.0%} below 0): an offset or a background removed twice?"
    return ""


def saturated_note(y: np.ndarray) -> str:
    """A flat top at the maximum (saturated detector or clipped data), or ""."""
    top = float(y.max())
    at_top = np.flatnonzero(y == top)
    if at_top.size < 2:
        return ""
    breaks = np.flatnonzero(np.diff(at_top) != 1)
    run = int(np.diff(np.concatenate(([-1], breaks, [at_top.size - 1]))).max())
    noise = float(np.median(np.abs(np.diff(y)))) / (0.6745 * np.sqrt(2.0))
    if (run < SATURATED_RUN and at_top.size < SATURATED_COUNT) or not (
        top - float(np.median(y)) > SATURATED_SNR * noise
    ):
        return ""
    return (
        f"{at_top.size} points at the maximum intensity {top:g} (a flat top): saturated or "
        "clipped data? the strongest peaks are cut"
    )


def coarse_note(step: float, grid: QGrid) -> str:
    """A median step in Q (``step``, Å⁻¹) too coarse for the grid, or ""."""
    if step <= COARSE_FACTOR * grid.step:
        return ""
    return (
        f"x step too coarse for the model: {step:.4f} Å⁻¹ in Q, {step / grid.step:.0f}× its grid "
        "step (narrow peaks are under-sampled, calls less reliable)"
    )


def data_notes(pattern: Pattern, grid: QGrid) -> list[str]:
    """Every sanity note of ``pattern`` read against ``grid`` (see the module notes); Q, its steps
    and their median are computed once."""
    q = pattern.q
    dq = np.abs(np.diff(q))
    step = float(np.median(dq))
    notes = [
        gap_note(pattern, q, gaps_in_steps(dq, step), grid),
        negative_note(pattern.y),
        saturated_note(pattern.y),
        coarse_note(step, grid),
    ]
    return [n for n in notes if n]
