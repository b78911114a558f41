"""Model input from intensities on the Q grid: the same function for synthetic and measured patterns.

Input channels (float32, shape ``(batch, 3, n)``):
0. intensity min–max normalised over the covered points (the paper's input);
1. the same after removing a smooth background (coarse-to-fine morphological openings, each
   smoothed), scaled to a maximum of 1: it makes raw unmasked integrations (fluid and cell background
   dominating) look like the expert-processed masked ones;
2. the coverage mask (1 where the pattern has data), so the model knows where it saw nothing.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import maximum_filter1d, minimum_filter1d, uniform_filter1d

N_CHANNELS = 3
# Å⁻¹, coarse to fine: the finest stays wider than any target peak's base (rhenium FWHM ≲ 0.06 Å⁻¹ at
# 0.561 Å), the coarse ones take out liquid and cell humps first so a flat window fits what is left.
BACKGROUND_WINDOWS_Q = (0.48, 0.24, 0.12)


def fill_uncovered(intensity: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """Replace uncovered points by the nearest covered value along each row (for filtering)."""
    idx = np.where(coverage, np.arange(coverage.shape[1])[None, :], -1)
    left = np.maximum.accumulate(idx, axis=1)
    right = np.flip(np.minimum.accumulate(np.flip(np.where(idx < 0, idx.shape[1], idx), 1), axis=1), 1)
    nearest = np.where(left >= 0, left, right)
    nearest = np.clip(nearest, 0, coverage.shape[1] - 1)
    return np.take_along_axis(intensity, nearest, axis=1)


def _smoothed_opening(x: np.ndarray, window: int) -> np.ndarray:
    eroded = minimum_filter1d(x, window, axis=1, mode="nearest")
    opened = maximum_filter1d(eroded, window, axis=1, mode="nearest")
    return uniform_filter1d(opened, window, axis=1, mode="nearest")


def smooth_background(intensity: np.ndarray, coverage: np.ndarray, q_step: float) -> np.ndarray:
    """Smooth background of each row: a smoothed opening of what the coarser passes left, summed
    over windows :data:`BACKGROUND_WINDOWS_Q` (a flat window alone would cut peaks on steep slopes)."""
    filled = fill_uncovered(intensity, coverage)
    background = np.zeros_like(filled)
    for width in BACKGROUND_WINDOWS_Q:
        window = max(3, int(round(width / q_step)))
        background += _smoothed_opening(filled - background, window)
    return background


def model_input(intensity: np.ndarray, coverage: np.ndarray, q_step: float) -> np.ndarray:
    """Stack the model's input channels for a batch of patterns on one Q grid (step ``q_step`` Å⁻¹)."""
    intensity = np.atleast_2d(np.asarray(intensity, dtype=np.float32))
    coverage = np.atleast_2d(np.asarray(coverage, dtype=bool))
    cov = coverage.astype(np.float32)
    big = np.float32(np.finfo(np.float32).max)
    lo = np.where(coverage, intensity, big).min(axis=1, keepdims=True)
    hi = np.where(coverage, intensity, -big).max(axis=1, keepdims=True)
    lo = np.where(coverage.any(axis=1, keepdims=True), lo, 0.0)
    hi = np.where(coverage.any(axis=1, keepdims=True), hi, 1.0)
    raw = (intensity - lo) / np.maximum(hi - lo, 1e-12) * cov

    residual = (intensity - smooth_background(intensity, coverage, q_step)) * cov
    peak = np.maximum(residual.max(axis=1, keepdims=True), 1e-12)
    detrended = np.clip(residual / peak, -1.0, 1.0)
    return np.stack([raw, detrended, cov], axis=1).astype(np.float32)
