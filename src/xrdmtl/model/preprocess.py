"""Model input from intensities on the Q grid: the same function for synthetic and measured patterns.

Input channels (float32, shape ``(batch, N_CHANNELS, n)``):
0. intensity min–max normalised over the covered points (the paper's input);
1. the same after removing a smooth background (coarse-to-fine morphological openings, each
   smoothed), scaled to a maximum of 1: it makes raw unmasked integrations (fluid and cell background
   dominating) look like the expert-processed masked ones;
2. the coverage mask (1 where the pattern has data), so the model knows where it saw nothing;
3. the same residual on a fixed log scale (:func:`log_contrast`): in units of the larger of the
   noise (correlated over a few points, as integrated detector bins are) and 0.1 % of the
   background, compressed by asinh. Unlike channel 1 it is not scaled by the
   strongest peak, so a weak phase beside a gasket peak 30× over the background stays visible, and
   how far a peak stands over the fluid (a trace of a few tenths of a percent or a real phase)
   is kept.
"""

from __future__ import annotations

import numpy as np

from ..physics.background import smooth_background

N_CHANNELS = 4
COVERAGE_CHANNEL = 2
CONTRAST_CHANNEL = 3  # the background-removed pattern on a fixed log scale
EVIDENCE_CHANNELS = (0, 1, 3)  # the intensity-derived channels (what a saliency map is made of)
CONTRAST_NOISE = 3.0  # σ: the contrast unit
CONTRAST_LAG = 8  # grid points: the noise σ of the contrast unit is read from differences this far
# apart, beyond the correlation of integrated bins (hdac and pyFAI integrations: lag-8 differences
# 3.5–4.5× the neighbour ones), so a correlated wiggle is not taken for a peak
CONTRAST_BACKGROUND = 1e-3  # of the mean background: the floor of the contrast unit. It was 1 %
# (preprocessing version 2), which hid rings of a few tenths of a percent that stand 5σ over a
# high-count background
CONTRAST_RANGE = 1e4  # contrast units mapped to 1


def noise_sigma(residual: np.ndarray, coverage: np.ndarray, lag: int = 1) -> np.ndarray:
    """Robust noise σ of each row ``(B, 1)``: the median absolute difference of covered points
    ``lag`` apart, / (0.6745 √2) (peaks are few, so the median ignores them). ``lag=1``: the
    point-to-point noise; a larger lag also takes in noise correlated over fewer than ``lag`` points.

    Uncovered differences are replaced alternately by -1 and +inf (below and above every valid
    value), which leaves each row's median where the valid values alone put it, so one vectorised
    median serves rows of any coverage."""
    valid = coverage[:, lag:] & coverage[:, :-lag]
    invalid_rank = np.cumsum(~valid, axis=1)
    filler = np.where(invalid_rank % 2 == 0, np.float32(-1.0), np.float32(np.inf))
    diff = np.where(valid, np.abs(residual[:, lag:] - residual[:, :-lag]), filler)
    med = np.median(diff, axis=1, keepdims=True)
    med = np.where(
        np.isfinite(med) & (med > 0) & valid.any(axis=1, keepdims=True), med, np.float32(0)
    )
    return np.asarray(med / np.float32(0.6745 * np.sqrt(2.0)))


def log_contrast(residual: np.ndarray, background: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """``asinh(residual / unit) / asinh(CONTRAST_RANGE)`` per row, with ``unit`` the larger of
    :data:`CONTRAST_NOISE` σ (at lag 1 or :data:`CONTRAST_LAG`, whichever is larger) and
    :data:`CONTRAST_BACKGROUND` × the mean background; 0 where uncovered."""
    cov = coverage.astype(np.float32)
    n_cov = np.maximum(cov.sum(axis=1, keepdims=True), 1.0)
    level = (background * cov).sum(axis=1, keepdims=True) / n_cov
    sigma = np.maximum(
        noise_sigma(residual, coverage), noise_sigma(residual, coverage, CONTRAST_LAG)
    )
    unit = np.maximum(CONTRAST_NOISE * sigma, CONTRAST_BACKGROUND * level)
    unit = np.maximum(unit, 1e-6 * np.abs(residual).max(axis=1, keepdims=True) + 1e-30)
    out = np.arcsinh(residual / unit) / np.arcsinh(CONTRAST_RANGE)
    return np.asarray(np.clip(out, -1.0, 1.0) * cov)


def model_input(intensity: np.ndarray, coverage: np.ndarray, q_step: float) -> np.ndarray:
    """Stack the model's input channels for a batch of patterns on one Q grid (step ``q_step`` Å⁻¹)."""
    intensity = np.atleast_2d(np.asarray(intensity, dtype=np.float32))
    coverage = np.atleast_2d(np.asarray(coverage, dtype=bool))
    cov = coverage.astype(np.float32)
    out = np.empty((intensity.shape[0], N_CHANNELS, intensity.shape[1]), np.float32)
    big = np.float32(np.finfo(np.float32).max)
    any_cov = coverage.any(axis=1, keepdims=True)
    lo = np.where(
        any_cov, np.where(coverage, intensity, big).min(axis=1, keepdims=True), np.float32(0)
    )
    hi = np.where(
        any_cov, np.where(coverage, intensity, -big).max(axis=1, keepdims=True), np.float32(1)
    )
    np.multiply((intensity - lo) / np.maximum(hi - lo, np.float32(1e-12)), cov, out=out[:, 0])

    background = smooth_background(intensity, coverage, q_step)
    residual = (intensity - background) * cov
    peak = np.maximum(residual.max(axis=1, keepdims=True), np.float32(1e-12))
    np.clip(residual / peak, -1.0, 1.0, out=out[:, 1])
    out[:, 2] = cov
    out[:, 3] = log_contrast(residual, background, coverage)
    return out
