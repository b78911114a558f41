"""What drove each call: peaks in the pattern, the reference reflections they match, and saliency.

Everything here works on a batch of model inputs ``x`` (float32 ``(B, C, G)``, see
:func:`xrdmtl.model.preprocess.model_input`) on one Q grid:

- :func:`find_peaks_batch` finds peaks in the background-removed channel of every pattern at once;
- :class:`ReferenceWindows` turns reference reflections into the grid windows where a phase can
  explain a peak (within a lattice tolerance), so matching peaks to phases is a table look-up;
- :func:`saliency` gives input × gradient of each phase's logit over Q (one backward pass per phase
  for the whole batch) and :func:`top_regions` the Q intervals that contributed most.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.ndimage import maximum_filter1d, minimum_filter1d, uniform_filter1d

from ..model.preprocess import EVIDENCE_CHANNELS
from ..physics.grid import QGrid
from ..physics.phases import Reflections

PEAK_HALF_WIDTH_Q = 0.015  # Å⁻¹: a peak is the maximum within ± this
PEAK_SLACK_Q = (
    0.012  # Å⁻¹: zero/offset error and peak-position noise allowed on top of the lattice tolerance
)
NOISE_BLOCKS = 16  # stretches of the grid with their own noise level
MIN_REFLECTION_INTENSITY = 2.0  # of 100: weaker reference reflections explain nothing


@dataclass
class Explanation:
    """Evidence behind one pattern's calls.

    ``peaks``: detected peak positions (Q, Å⁻¹) with their heights relative to the strongest;
    ``matched``: per phase, the reference reflections (Q) that a detected peak sits on;
    ``unexplained``: strong peaks that no called phase explains;
    ``saliency``: per phase, input × gradient over the grid (normalised to max |·| = 1), or None;
    ``regions``: per phase, the Q intervals that pushed the call up most (from the saliency);
    ``q_scale``: where the strong peaks fit the phases only with Q scaled by k (a wrong wavelength
    or distance, see :mod:`xrdmtl.inference.scale`), that k, and the line that says so.
    """

    peaks: list[tuple[float, float]] = field(default_factory=list)
    matched: dict[str, list[float]] = field(default_factory=dict)
    unexplained: list[float] = field(default_factory=list)
    saliency: dict[str, np.ndarray] | None = None
    regions: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    q_scale: float | None = None
    q_scale_note: str = ""

    def summary(self, phases: Sequence[str]) -> str:
        """One short line: the matched reference peaks (and top saliency region) of ``phases``."""
        parts = []
        for name in phases:
            qs = ", ".join(f"{q:.2f}" for q in self.matched.get(name, [])[:4])
            reg = self.regions.get(name)
            where = f"; drove Q {reg[0][0]:.2f}–{reg[0][1]:.2f}" if reg else ""
            parts.append(f"{name}: peaks at Q={qs or 'none'}{where}")
        return " | ".join(parts)


def _masked_median(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Median of the valid values of each row (0 where there are none)."""
    ordered = np.sort(np.where(valid, values, np.inf), axis=1)
    count = valid.sum(axis=1)
    med = np.take_along_axis(ordered, (count // 2)[:, None], axis=1)[:, 0]
    return np.where(count > 0, med, 0.0)


def _mad(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Median absolute deviation of the valid values of each row."""
    centre = _masked_median(values, valid)
    return _masked_median(np.abs(values - centre[:, None]), valid)


def noise_profile(values: np.ndarray, valid: np.ndarray, blocks: int = NOISE_BLOCKS) -> np.ndarray:
    """Robust noise σ along each row ``(B, G)``: the scaled MAD in each of ``blocks`` stretches of Q
    (noise of an integrated frame grows where rings have few pixels), never below the row's median
    block level. The MAD of the values, not of their differences, so that resampling a coarse
    pattern onto the fine grid (which correlates neighbours) does not hide its noise."""
    b, g = values.shape
    size = -(-g // blocks)
    pad = size * blocks - g
    v = np.pad(values, ((0, 0), (0, pad))).reshape(b * blocks, size)
    ok = np.pad(valid, ((0, 0), (0, pad))).reshape(b * blocks, size)
    local = _mad(v, ok).reshape(b, blocks)
    filled = ok.reshape(b, blocks, size).mean(axis=2) >= 0.5
    floor = np.nanmedian(np.where(filled, local, np.nan), axis=1) if filled.any() else np.zeros(b)
    local = np.maximum(local, np.nan_to_num(floor)[:, None])
    return (np.repeat(local, size, axis=1)[:, :g] * 1.4826).astype(np.float32)


def find_peaks_batch(
    x: np.ndarray, grid: QGrid, min_height: float = 0.05, min_snr: float = 4.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Peaks of every pattern's background-removed channel (``x[:, 1]``), vectorised over the batch.

    A peak is the maximum within ±:data:`PEAK_HALF_WIDTH_Q`, with data all around it, at least
    ``min_height`` of the pattern's strongest residual and ``min_snr`` times the local noise σ. Returns (row, grid index, height,
    height in noise units), sorted by row then index.
    """
    d = x[:, 1, :]
    cov = x[:, 2, :] > 0.5
    half = max(1, int(round(PEAK_HALF_WIDTH_Q / grid.step)))
    local_max = maximum_filter1d(d, 2 * half + 1, axis=1, mode="nearest")
    inner = minimum_filter1d(
        cov, 2 * half + 1, axis=1, mode="constant", cval=False
    )  # not at an edge
    sigma = noise_profile(d, cov)
    top = (d >= min_height) & (d == local_max)
    top &= inner
    top &= d >= min_snr * sigma
    top[:, 1:] &= ~top[:, :-1]  # a flat top counts once
    rows, idx = np.nonzero(top)
    height = d[rows, idx]
    return rows, idx, height, height / np.maximum(sigma[rows, idx], 1e-12)


@dataclass(frozen=True)
class ReferenceWindows:
    """A phase's strong reflections on a grid: each one's Q and the grid indices (``lo``…``hi``,
    inclusive) within its matching tolerance; ``lo > hi`` for a reflection off the grid."""

    q: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @classmethod
    def build(cls, reflections: Reflections, grid: QGrid, tolerance: float) -> ReferenceWindows:
        """Windows of the reflections at least :data:`MIN_REFLECTION_INTENSITY` strong, within
        ``tolerance``·Q + :data:`PEAK_SLACK_Q` of their position."""
        q = reflections.q[reflections.intensity >= MIN_REFLECTION_INTENSITY]
        reach = tolerance * q + PEAK_SLACK_Q
        lo = np.clip(np.ceil(grid.index(q - reach)), 0, grid.n).astype(int)
        hi = np.clip(np.floor(grid.index(q + reach)), -1, grid.n - 1).astype(int)
        return cls(q, lo, hi)

    @property
    def on_grid(self) -> np.ndarray:
        """Which reflections (bool ``(R,)``) have a window on the grid."""
        return self.lo <= self.hi

    def mask(self, n: int) -> np.ndarray:
        """Grid points (bool ``(n,)``) inside any window: where the phase can explain a peak."""
        edges = np.zeros(n + 1, dtype=int)
        ok = self.on_grid
        np.add.at(edges, self.lo[ok], 1)
        np.add.at(edges, self.hi[ok] + 1, -1)
        return np.cumsum(edges[:n]) > 0

    def hits(self, peak_count: np.ndarray) -> np.ndarray:
        """Which reflections (bool ``(B, R)``) have a peak in their window; ``peak_count`` is the
        running count of detected peaks along each row, ``(B, n + 1)`` starting at 0."""
        return self.on_grid & (
            peak_count[:, self.hi + 1] > peak_count[:, np.minimum(self.lo, self.hi + 1)]
        )


def saliency(net: Callable[[Any], Any], x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Input × gradient of each phase's logit of ``net`` (an eval-mode torch module) over Q: ``(B, T, G)``.

    ``net`` returns logits ``(B, T)`` or ``(B, T, 2)`` (absent, present: their difference is used).

    Gradients flow into the intensity-derived channels (:data:`~xrdmtl.model.preprocess.EVIDENCE_CHANNELS`;
    the coverage channel is not evidence); each
    (pattern, phase) map is lightly smoothed and scaled to a maximum |value| of 1.
    """
    import torch

    out = []
    with torch.enable_grad():
        for start in range(0, len(x), batch_size):
            xb = torch.from_numpy(
                np.ascontiguousarray(x[start : start + batch_size])
            ).requires_grad_(True)
            logits = net(xb)
            if logits.ndim == 3:  # (B, T, 2): absent/present logits → their difference
                logits = logits[..., 1] - logits[..., 0]
            maps = []
            for t in range(logits.shape[1]):
                (grad,) = torch.autograd.grad(
                    logits[:, t].sum(), xb, retain_graph=t + 1 < logits.shape[1]
                )
                maps.append((grad * xb)[:, list(EVIDENCE_CHANNELS)].sum(dim=1).detach().numpy())
            out.append(np.stack(maps, axis=1))
    sal = uniform_filter1d(np.concatenate(out).astype(np.float32), 5, axis=2, mode="nearest")
    scale = np.abs(sal).max(axis=2, keepdims=True)
    return np.asarray(sal / np.where(scale > 0, scale, 1.0))


def top_regions(
    sal: np.ndarray, q: np.ndarray, k: int = 3, level: float = 0.3
) -> list[tuple[float, float]]:
    """Up to ``k`` Q intervals where ``sal`` (one map) exceeds ``level``, largest total first."""
    above = np.concatenate(([False], sal > level, [False]))
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    starts, stops = edges[0::2], edges[1::2]
    if starts.size == 0:
        return []
    mass = np.add.reduceat(np.where(sal > level, sal, 0.0), starts)
    order = np.argsort(mass)[::-1][:k]
    return [(float(q[starts[i]]), float(q[stops[i] - 1])) for i in order]
