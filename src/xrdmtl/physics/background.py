"""A smooth background under a pattern on a regular Q grid (multi-scale morphological opening)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import maximum_filter1d, minimum_filter1d, uniform_filter1d

# Å⁻¹, coarse to fine: the finest stays wider than any target peak's base (rhenium FWHM ≲ 0.06 Å⁻¹ at
# 0.561 Å), the coarse ones take out liquid and cell humps first so a flat window fits what is left.
BACKGROUND_WINDOWS_Q = (0.48, 0.24, 0.12)


def _smoothed_opening(x: np.ndarray, window: int) -> np.ndarray:
    eroded = minimum_filter1d(x, window, axis=1, mode="nearest")
    opened = maximum_filter1d(eroded, window, axis=1, mode="nearest")
    return np.asarray(uniform_filter1d(opened, window, axis=1, mode="nearest"))


def smooth_background(intensity: np.ndarray, coverage: np.ndarray, q_step: float) -> np.ndarray:
    """Smooth background of each row: a smoothed opening of what the coarser passes left, summed
    over windows :data:`BACKGROUND_WINDOWS_Q` (a flat window alone would cut peaks on steep slopes)."""
    filled = fill_uncovered(intensity, coverage)
    background = np.zeros_like(filled)
    for width in BACKGROUND_WINDOWS_Q:
        window = max(3, int(round(width / q_step)))
        background += _smoothed_opening(filled - background, window)
    return background


def fill_uncovered(intensity: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """Replace uncovered points by the nearest covered value along each row (for filtering)."""
    idx = np.where(coverage, np.arange(coverage.shape[1])[None, :], -1)
    left = np.maximum.accumulate(idx, axis=1)
    right = np.flip(
        np.minimum.accumulate(np.flip(np.where(idx < 0, idx.shape[1], idx), 1), axis=1), 1
    )
    nearest = np.where(left >= 0, left, right)
    nearest = np.clip(nearest, 0, coverage.shape[1] - 1)
    return np.take_along_axis(intensity, nearest, axis=1)
