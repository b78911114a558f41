"""The one pseudo-Voigt."""

from __future__ import annotations

import numpy as np
from scipy.integrate import trapezoid

from xrdmtl.physics.profiles import pseudo_voigt, pseudo_voigt_area


def test_unit_height_half_maximum_at_half_fwhm_and_area() -> None:
    x = np.linspace(-200, 200, 400001)
    for eta in (0.0, 0.4, 1.0):
        y = pseudo_voigt(x, eta)
        assert y.max() == 1.0 and np.isclose(pseudo_voigt(np.array([0.5]), eta)[0], 0.5)
        assert np.isclose(
            trapezoid(y, x), pseudo_voigt_area(np.array(1.0), np.array(eta)), rtol=2e-3
        )


def test_keeps_float32() -> None:
    assert pseudo_voigt(np.zeros(3, np.float32), np.float32(0.3)).dtype == np.float32
