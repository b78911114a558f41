"""Conversions between the x units of diffraction patterns (pure functions over arrays).

Q = 4π sin(θ)/λ = 2π/d, with Q in Å⁻¹, λ and d in Å and 2θ in degrees.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

CU_KALPHA = 1.5418  # Å, weighted Cu Kα1/Kα2 (RRUFF powder patterns)
HC_KEV_A = 12.398419843320026  # h·c in keV·Å

UNITS = ("2th_deg", "q_A^-1", "q_nm^-1", "d_A")
UNIT_ALIASES = {
    "2th": "2th_deg",
    "2theta": "2th_deg",
    "tth": "2th_deg",
    "deg": "2th_deg",
    "q": "q_A^-1",
    "q_a": "q_A^-1",
    "q_a-1": "q_A^-1",
    "q_nm": "q_nm^-1",
    "q_nm-1": "q_nm^-1",
    "d": "d_A",
}


def normalize_unit(name: str) -> str:
    """The :data:`UNITS` entry that ``name`` means (case-insensitive; aliases such as ``2theta``,
    ``q`` for Å⁻¹, ``q_nm``, ``d``); ValueError for anything else."""
    key = name.strip().lower().replace("å", "a")
    for unit in UNITS:
        if key == unit.lower():
            return unit
    if key in UNIT_ALIASES:
        return UNIT_ALIASES[key]
    raise ValueError(f"unknown x unit {name!r} (known: {', '.join(UNITS)})")


def tth_to_q(two_theta_deg: ArrayLike, wavelength: float | np.ndarray) -> np.ndarray:
    """Scattering angle 2θ (degrees) to Q (Å⁻¹) at ``wavelength`` (Å)."""
    theta = np.deg2rad(np.asarray(two_theta_deg, dtype=float)) / 2.0
    return np.asarray(4.0 * np.pi * np.sin(theta) / wavelength)


def q_to_tth(q: ArrayLike, wavelength: float) -> np.ndarray:
    """Q (Å⁻¹) to 2θ (degrees); NaN where the wavelength cannot reach that Q."""
    s = np.asarray(q, dtype=float) * wavelength / (4.0 * np.pi)
    with np.errstate(invalid="ignore"):
        return np.rad2deg(2.0 * np.arcsin(np.where(np.abs(s) <= 1.0, s, np.nan)))


def q_to_tth_rad(
    q: ArrayLike, wavelength: float | np.ndarray, s_max: float | None = None
) -> np.ndarray:
    """Q (Å⁻¹) to 2θ in radians, elementwise over arrays of Q and wavelength (Å), keeping their dtype.

    Beyond the wavelength's reach: NaN, or with ``s_max`` sin θ clipped to [0, ``s_max``] (no NaN).
    """
    s = np.asarray(q) * wavelength / (4 * np.pi)
    if s_max is not None:
        return 2 * np.arcsin(np.clip(s, 0, s_max))
    with np.errstate(invalid="ignore"):
        return 2 * np.arcsin(np.where(s < 1, s, np.nan))


def tth_rad_to_q(two_theta_rad: ArrayLike, wavelength: float | np.ndarray) -> np.ndarray:
    """2θ in radians to Q (Å⁻¹), elementwise over arrays of 2θ and wavelength (Å)."""
    return 4 * np.pi * np.sin(np.asarray(two_theta_rad) / 2) / wavelength


def d_to_q(d: ArrayLike) -> np.ndarray:
    """d-spacing (Å) to Q (Å⁻¹)."""
    return 2.0 * np.pi / np.asarray(d, dtype=float)


def q_to_d(q: ArrayLike) -> np.ndarray:
    """Q (Å⁻¹) to d-spacing (Å)."""
    return 2.0 * np.pi / np.asarray(q, dtype=float)


def energy_to_wavelength(energy_kev: float) -> float:
    """Photon energy (keV) to wavelength (Å)."""
    return HC_KEV_A / energy_kev


def to_q(x: ArrayLike, unit: str, wavelength: float | None = None) -> np.ndarray:
    """Convert x values in ``unit`` (one of :data:`UNITS`) to Q in Å⁻¹."""
    x = np.asarray(x, dtype=float)
    if unit == "q_A^-1":
        return x
    if unit == "q_nm^-1":
        return x / 10.0
    if unit == "d_A":
        return d_to_q(x)
    if unit == "2th_deg":
        if wavelength is None:
            raise ValueError("2θ needs a wavelength")
        return tth_to_q(x, wavelength)
    raise ValueError(f"unknown x unit {unit!r}")
