"""The model's Q grid."""

from __future__ import annotations

import numpy as np

from xrdmtl.physics.grid import DEFAULT_GRID, QGrid


def test_values_step_and_index_agree() -> None:
    g = QGrid(1.0, 3.0, 201)
    assert g.step == 0.01 and g.values[0] == 1.0 and g.values[-1] == 3.0
    assert np.allclose(g.index(g.values), np.arange(g.n))
    assert QGrid.from_dict(g.to_dict()) == g
    assert DEFAULT_GRID.n == 2048
