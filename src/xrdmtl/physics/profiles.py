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


def render_sticks(
    position: np.ndarray, intensity: np.ndarray, fwhm: float, step: float, margin: float
) -> tuple[np.ndarray, np.ndarray]:
    """A noise-free profile of a stick list: Gaussian lines of ``fwhm`` at ``position`` holding
    ``intensity`` as their heights (coincident sticks add), on an axis of ``step`` from ``margin``
    below the first stick to ``margin`` above the last (same unit as ``position``)."""
    position = np.asarray(position, dtype=float)
    x = np.arange(position.min() - margin, position.max() + margin + step / 2, step)
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    y = np.asarray(intensity, dtype=float) @ np.exp(
        -0.5 * ((x[None, :] - position[:, None]) / sigma) ** 2
    )
    return x, y
