"""The Pattern type: validation, conversion to Q, resampling onto the model grid."""

from __future__ import annotations

import numpy as np
import pytest

from xrdmtl.errors import PatternError
from xrdmtl.physics.grid import QGrid
from xrdmtl.physics.pattern import Pattern, resample

X = np.linspace(5, 60, 200)
Y = 1.0 + np.exp(-0.5 * ((X - 30) / 0.2) ** 2)


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (X[:5], Y[:5], "only 5 data points"),
        (X, np.where(X > 40, np.nan, Y), "NaN or infinite"),
        (np.where(X > 40, np.inf, X), Y, "NaN or infinite"),
        (np.r_[X[:50], X[49:199]], Y, "duplicate x"),
        (np.r_[X[:50], X[40:190]], Y, "non-monotonic x"),
        (X, np.zeros_like(X), "constant"),
        (X, Y[:-1], "one length"),
    ],
)
def test_invalid(x: np.ndarray, y: np.ndarray, message: str) -> None:
    with pytest.raises(PatternError, match=message) as info:
        Pattern(x, y, "2th_deg", 1.5, source="scan.xy")
    assert str(info.value).startswith("scan.xy: ")


def test_bad_unit_and_wavelength() -> None:
    with pytest.raises(PatternError, match="unknown x unit"):
        Pattern(X, Y, "r_mm", 1.5)
    with pytest.raises(PatternError, match="implausible wavelength"):
        Pattern(X, Y, "2th_deg", 0.0)


def test_q_needs_wavelength() -> None:
    with pytest.raises(PatternError, match="--wavelength"):
        _ = Pattern(X, Y, "2th_deg").q


def test_q_of_every_unit() -> None:
    q = Pattern(X, Y, "2th_deg", 1.5418).q
    assert Pattern(q, Y, "q_A^-1").q == pytest.approx(q)
    assert Pattern(q * 10, Y, "q_nm^-1").q == pytest.approx(q)
    d = 2 * np.pi / q
    assert Pattern(d, Y, "d_A").q == pytest.approx(q)  # d runs backwards: allowed


def test_resample_coverage_and_area() -> None:
    grid = QGrid(1.0, 3.0, 201)
    q = np.linspace(1.5, 2.5, 5001)  # finer than the grid: bin averages
    y = 2.0 + np.exp(-0.5 * ((q - 2.0) / 0.02) ** 2)
    out, covered = resample(q, y, grid)
    assert out.dtype == np.float32
    assert covered.sum() == pytest.approx(100, abs=2)
    assert not covered[grid.values < 1.5].any()
    assert not covered[grid.values > 2.5].any()
    assert (out[~covered] == 0).all()
    area = np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(q))
    assert out[covered].sum() * grid.step == pytest.approx(area, rel=0.01)
    assert grid.values[np.argmax(out)] == pytest.approx(2.0, abs=grid.step)


def test_resample_coarse_interpolates_and_sorts() -> None:
    grid = QGrid(1.0, 3.0, 2001)
    q = np.linspace(3.0, 1.0, 50)  # coarser than the grid, descending
    out, covered = resample(q, 2 * q, grid)
    assert np.allclose(out[covered], 2 * grid.values[covered], rtol=1e-5)


def test_on_grid() -> None:
    p = Pattern(X, Y, "2th_deg", 1.5418)
    out, covered = p.on_grid(QGrid())
    assert out.shape == covered.shape == (2048,)
    assert covered.any() and not covered.all()
