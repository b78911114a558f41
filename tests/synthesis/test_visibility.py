"""Clean reflections from the simulator's truth: the parts add up to the frame's expected counts
without changing the draw, a bright smooth phase has many clean lines, a faint one or one buried
under a brighter phase has none, and the overlap-aware labels keep only what is visible."""

from __future__ import annotations

import numpy as np
import pytest

from xrdmtl.physics.grid import QGrid
from xrdmtl.physics.phases import get_phase
from xrdmtl.physics.refine import PhaseLines, significance
from xrdmtl.synthesis.frames import FrameConfig, FrameSimulator
from xrdmtl.synthesis.visibility import (
    cell_bounds,
    cell_identifiable,
    clean_counts,
    clean_reflections,
    line_windows,
    visible_labels,
)

CONFIG = FrameConfig(
    p_target=1.0,
    p_distractor=0.0,
    ring_ratio=(4.0, 4.0),
    ring_ratio_phase=(("rhenium", (0.001, 0.001)),),  # rhenium far below the noise
    background=(200.0, 200.0),
    spots_per_ring=(2e4, 2e4),
    spots_phase=(),
    anvil_spots=(0, 0),
    stray_spots=(0, 0),
    p_unknown=0.0,
)


def test_parts_add_up_and_count_the_visible_phases() -> None:
    plain = FrameSimulator(config=CONFIG).sample(np.random.default_rng(3))
    sim = FrameSimulator(config=CONFIG, keep_parts=True)
    s = sim.sample(np.random.default_rng(3))
    assert np.array_equal(s.frame, plain.frame) and plain.phase_counts is None  # the same draw
    assert s.phase_counts is not None and s.ring_counts is not None
    assert np.allclose(sum(s.phase_counts.values()), s.ring_counts.ravel(), rtol=1e-4, atol=1e-3)
    clean = clean_reflections(sim, s)
    assert clean["bastnaesite"] >= 10 and clean["calcite"] >= 5 and clean["rhenium"] == 0
    assert clean_reflections(sim, s, mask=np.ones(s.frame.shape, bool)) == dict.fromkeys(clean, 0)


def test_windows_merge_and_dominance() -> None:
    assert np.allclose(line_windows(np.array([10.0, 5.0, 5.1]), 0.1), [[4.9, 5.2], [9.9, 10.1]])
    signal, total = np.array([100.0, 100.0, 10.0]), np.array([400.0, 400.0, 400.0])
    assert clean_counts(signal, total, np.array([[10.0, 60.0, 0.0]]), 5.0, 2.0) == 1
    labels = np.array([[1, 1], [0, 1]])
    clean = [{"a": 3, "b": 0}, {"b": 12}]
    assert visible_labels(labels, ["a", "b"], clean, 3).tolist() == [[True, False], [False, True]]


def test_cell_bound_of_a_bright_phase_and_of_an_invisible_one() -> None:
    """A bright smooth phase's many clean lines pin its cell far below 0.2 %; a phase under the
    noise gives no cell at all; a looser tolerance never lowers the chance."""
    sim = FrameSimulator(config=CONFIG, keep_parts=True)
    s = sim.sample(np.random.default_rng(3))
    bounds = cell_bounds(sim, s)
    assert bounds["bastnaesite"] > 0.99 and bounds["rhenium"] == 0.0
    tight = cell_bounds(sim, s, tolerance=1e-5)
    assert all(tight[k] <= bounds[k] for k in bounds) and tight["bastnaesite"] < 0.9


def test_cell_bound_counts_the_radial_scatter_of_a_few_crystals_spots() -> None:
    """Spots scattered about their ring (HOLDOUT's ``grain_scatter``) place a few-crystal line only
    to that scatter over √(spots/2): the same frame's bound is lower than without the scatter."""
    from dataclasses import replace

    spotty = replace(CONFIG, spots_per_ring=(8.0, 8.0), grain_scatter=1.0)
    sim = FrameSimulator(config=spotty, keep_parts=True)
    s = sim.sample(np.random.default_rng(5))
    scattered = cell_bounds(sim, s)
    exact = cell_bounds(FrameSimulator(config=replace(spotty, grain_scatter=0.0)), s)
    assert exact["bastnaesite"] > 0.0
    assert scattered["bastnaesite"] < exact["bastnaesite"]
    assert all(scattered[k] <= exact[k] for k in exact)


def _fine_z(q: np.ndarray, heights: np.ndarray, grid: QGrid, seed: int = 0) -> np.ndarray:
    """z at the check's 0.012 Å⁻¹ filter of Gaussian lines (FWHM 0.012) over a flat 1000 counts."""
    x = grid.values
    y = 1000 + (heights[:, None] * np.exp(-4 * np.log(2) * ((x - q[:, None]) / 0.012) ** 2)).sum(0)
    y = np.random.default_rng(seed).normal(y, np.sqrt(y))
    return significance((y - 1000)[None], np.ones((1, grid.n), bool), grid)[:, 1]


def test_a_cell_is_identifiable_where_its_lines_outnumber_every_other_cells_hits() -> None:
    grid = QGrid()
    lines = PhaseLines.build(get_phase("calcite"), grid)
    sa, sc = 1.006, 0.998
    z = _fine_z(lines.positions(sa, sc), 3.0 * lines.intensity, grid)
    truth = cell_identifiable(z, grid, lines, np.array([sa]), np.array([sc]), 0.004)
    assert truth.tolist() == [1.0]
    # the same peaks read as a phase 0.6 % smaller: a cell beyond 0.2 % explains them all
    off = cell_identifiable(z, grid, lines, np.array([sa / 1.006]), np.array([sc / 1.006]), 0.004)
    assert off.tolist() == [0.0]
    # one line alone: some cell beyond 0.2 % of the truth lands a line on it as well (a tie)
    strongest = int(np.argmax(lines.intensity))
    lone = _fine_z(lines.positions(sa, sc)[[strongest]], np.array([400.0]), grid)
    assert cell_identifiable(lone, grid, lines, np.array([sa]), np.array([sc]), 0.004)[0] == 0.5
    with pytest.raises(ValueError, match="one true scale pair"):
        cell_identifiable(z, grid, lines, np.array([sa, sa]), np.array([sc]), 0.004)
