"""The smooth background shared by the model input and the peak evidence."""

from __future__ import annotations

import numpy as np

from xrdmtl.physics.background import fill_uncovered, smooth_background


def test_background_follows_the_slope_not_the_peaks() -> None:
    q = np.linspace(1.0, 5.0, 2000)
    slope = 100.0 + 20.0 * q
    peaks = 500.0 * np.exp(-0.5 * ((q[None, :] - np.array([[2.0], [3.5]])) / 0.01) ** 2).sum(0)
    y = (slope + peaks)[None, :]
    cov = np.ones_like(y, dtype=bool)
    bg = smooth_background(y, cov, q[1] - q[0])
    assert bg.shape == y.shape
    inner = slice(200, 1800)
    assert np.abs(bg[0, inner] - slope[inner]).max() < 0.05 * slope[inner].min()


def test_uncovered_points_are_filled_from_their_neighbours() -> None:
    y = np.array([[1.0, 2.0, 0.0, 0.0, 5.0]])
    cov = np.array([[True, True, False, False, True]])
    filled = fill_uncovered(y, cov)
    assert filled[0, 0] == 1.0 and filled[0, 4] == 5.0
    assert np.all(np.isfinite(filled)) and filled[0, 2] >= 2.0
