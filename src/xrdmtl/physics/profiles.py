"""Peak profiles: the pseudo-Voigt every simulated peak is drawn with (1D synthesis and frames)."""

from __future__ import annotations

import numpy as np

FOUR_LN2 = 4.0 * np.log(2.0)


def pseudo_voigt(x: np.ndarray, eta: np.ndarray | float) -> np.ndarray:
    """Unit-height pseudo-Voigt at ``x`` in FWHM units: η·Lorentzian + (1−η)·Gaussian, in ``x``'s dtype."""
    x2 = x * x
    gauss = np.exp(x2 * np.asarray(-FOUR_LN2, dtype=x2.dtype))
    x2 *= 4
    x2 += 1
    lorentz = np.reciprocal(x2, out=x2)
    lorentz -= gauss
    lorentz *= eta
    lorentz += gauss
    return np.asarray(lorentz)


def pseudo_voigt_area(fwhm: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """Integral of a unit-height pseudo-Voigt of this FWHM."""
    return np.asarray(fwhm * (eta * np.pi / 2 + (1 - eta) * 0.5 * np.sqrt(np.pi / np.log(2))))
