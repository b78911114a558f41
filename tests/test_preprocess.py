"""Model input channels: shapes, ranges, background removal and coverage handling."""

import numpy as np

from xrdmtl.grid import QGrid
from xrdmtl.preprocess import fill_uncovered, model_input


def _peaky(grid: QGrid, background: np.ndarray) -> np.ndarray:
    q = grid.values
    peaks = 50 * np.exp(-0.5 * ((q - 2.0) / 0.005) ** 2) + 30 * np.exp(-0.5 * ((q - 3.1) / 0.006) ** 2)
    return (background + peaks).astype(np.float32)


def test_channels_shape_and_range():
    grid = QGrid(1.0, 4.0, 1024)
    x = _peaky(grid, 1000 + 200 * np.sin(grid.values))
    cov = np.ones(grid.n, bool)
    m = model_input(x, cov, grid.step)
    assert m.shape == (1, 3, grid.n) and m.dtype == np.float32
    assert np.isclose(m[0, 0].min(), 0) and np.isclose(m[0, 0].max(), 1)
    assert m[0, 1].max() <= 1 and m[0, 1].min() >= -1
    assert (m[0, 2] == 1).all()


def test_background_removal_makes_background_irrelevant():
    """The detrended channel of a peak set on a large smooth background matches the bare peaks."""
    grid = QGrid(1.0, 4.0, 1024)
    cov = np.ones(grid.n, bool)
    flat = model_input(_peaky(grid, np.zeros(grid.n)), cov, grid.step)[0, 1]
    humped = model_input(_peaky(grid, 2000 + 800 * np.exp(-((grid.values - 2.3) / 0.6) ** 2)), cov, grid.step)[0, 1]
    peak_idx = np.argmax(flat)
    assert np.argmax(humped) == peak_idx
    assert np.abs(flat - humped).max() < 0.05


def test_uncovered_points_are_zero_and_ignored():
    grid = QGrid(1.0, 4.0, 512)
    x = _peaky(grid, np.full(grid.n, 100.0))
    cov = grid.values < 2.5
    x[~cov] = 1e6  # garbage where there is no data must not leak into the normalisation
    m = model_input(x, cov, grid.step)[0]
    assert (m[:, ~cov][:2] == 0).all()
    assert np.isclose(m[0, cov].max(), 1)


def test_fill_uncovered_takes_nearest_covered_value():
    x = np.array([[0, 5, 0, 0, 7, 0]], dtype=np.float32)
    cov = np.array([[False, True, False, False, True, False]])
    assert fill_uncovered(x, cov).tolist() == [[5, 5, 5, 5, 7, 7]]
