"""Physical sanity: gaps in x are no data, and odd data (negative, saturated, coarse) gets a note."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from xrdmtl.physics.grid import DEFAULT_GRID, QGrid
from xrdmtl.physics.pattern import GAP_FACTOR, Pattern, gap_steps
from xrdmtl.physics.sanity import coarse_note, data_notes, negative_note, saturated_note
from xrdmtl.physics.units import tth_to_q

WAVELENGTH = 0.561
RNG = np.random.default_rng(0)


def peaks(
    x: np.ndarray, at: tuple[float, ...] = (6.5, 21.0, 22.5), width: float = 0.05
) -> np.ndarray:
    return (
        100
        + sum(1000 * np.exp(-0.5 * ((x - a) / width) ** 2) for a in at)
        + RNG.normal(0, 3, x.size)
    )


def test_a_gap_in_x_is_no_data_not_an_interpolation() -> None:
    x = np.r_[np.arange(5, 8, 0.01), np.arange(20, 24, 0.01)]  # 2θ 5–8° and 20–24°
    pattern = Pattern(x, peaks(x), "2th_deg", WAVELENGTH)
    grid = QGrid(0.8, 5.0, 2048)
    intensity, covered = pattern.on_grid(grid)
    q = grid.values
    inside_gap = (q > tth_to_q(8.0, WAVELENGTH)) & (q < tth_to_q(20.0, WAVELENGTH))
    assert not covered[inside_gap].any() and (intensity[inside_gap] == 0).all()
    on_data = (q > tth_to_q(5.1, WAVELENGTH)) & (q < tth_to_q(7.9, WAVELENGTH))
    assert covered[on_data].all()  # the measured stretches stay covered
    assert pattern.gaps() == [(x[299], x[300])]
    (note,) = data_notes(pattern, grid)
    assert note.startswith("no data at 2θ 7.99–20.00°"), note


def test_steps_that_grow_smoothly_are_no_gap() -> None:
    d = np.linspace(0.9, 12.0, 3000)  # equal steps in d: in Q they grow 180-fold, smoothly
    pattern = Pattern(d, peaks(d, (2.0, 3.0)), "d_A")
    assert gap_steps(pattern.q).size == 0 and pattern.gaps() == []


@given(
    steps=st.lists(st.floats(0.5, 1.5), min_size=20, max_size=200),
    where=st.floats(0.0, 1.0),
    factor=st.floats(GAP_FACTOR * 1.01, 100.0),
)
def test_one_long_step_is_the_one_gap(steps: list[float], where: float, factor: float) -> None:
    dx = np.array(steps)
    assert gap_steps(np.concatenate(([0.0], np.cumsum(dx)))).size == 0  # steps within 3×: none
    i = int(where * (dx.size - 1))
    dx[i] = factor * dx.max()
    x = np.concatenate(([0.0], np.cumsum(dx)))
    assert gap_steps(x).tolist() == [i]
    assert gap_steps(x[::-1]).tolist() == [dx.size - 1 - i]  # a falling axis (d) alike


def test_sign_flipped_data_gets_a_note() -> None:
    x = np.arange(5, 30, 0.01)
    y = peaks(x)
    assert negative_note(-y).startswith(
        "intensities mostly negative"
    ) and "sign-flipped" in negative_note(-y)
    assert negative_note(y) == ""
    assert negative_note(y - 100.0) == ""  # background subtracted: half below 0, peaks up


def test_saturated_data_gets_a_note_but_low_counts_do_not() -> None:
    x = np.arange(5, 30, 0.01)
    y = peaks(x)
    assert "flat top" in saturated_note(np.minimum(y, 600.0))
    assert saturated_note(y) == ""
    low = RNG.poisson(2.0, 3000).astype(float)  # a low-count pattern repeats its maximum by chance
    assert saturated_note(low) == ""


def test_a_step_too_coarse_for_the_grid_gets_a_note() -> None:
    fine = np.arange(5, 40, 0.01)
    coarse = np.arange(5, 40, 0.2)  # ≈ 0.04 Å⁻¹ at 0.561 Å: 20 grid steps
    assert not [
        n for n in data_notes(Pattern(fine, peaks(fine), "2th_deg", WAVELENGTH), DEFAULT_GRID)
    ]
    (note,) = data_notes(
        Pattern(coarse, peaks(coarse, width=0.3), "2th_deg", WAVELENGTH), DEFAULT_GRID
    )
    assert note.startswith("x step too coarse for the model") and "× its grid step" in note
    assert coarse_note(DEFAULT_GRID.step, DEFAULT_GRID) == ""


def test_huge_intensities_read_as_the_same_pattern() -> None:
    x = np.arange(5, 40, 0.01)
    y = peaks(x)
    small, cov = Pattern(x, y, "2th_deg", WAVELENGTH).on_grid(DEFAULT_GRID)
    for scale in (1e300, 1e-300):
        big, big_cov = Pattern(x, y * scale, "2th_deg", WAVELENGTH).on_grid(DEFAULT_GRID)
        assert np.isfinite(big).all() and (big_cov == cov).all()
        np.testing.assert_allclose(big / big.max(), small / small.max(), rtol=1e-5, atol=1e-6)
