"""Unit conversions against Bragg's law, λ = 2 d sin θ."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xrdmtl.physics.units import (
    CU_KALPHA,
    UNITS,
    d_to_q,
    energy_to_wavelength,
    normalize_unit,
    q_to_d,
    q_to_tth,
    to_q,
    tth_to_q,
)


def bragg_tth(d: float, wavelength: float) -> float:
    return float(np.degrees(2 * np.arcsin(wavelength / (2 * d))))


@pytest.mark.parametrize(
    ("d", "wavelength"), [(3.0354, CU_KALPHA), (3.0354, 0.561), (1.2, 0.4066), (4.2, 1.78897)]
)
def test_bragg_law(d: float, wavelength: float) -> None:
    tth = bragg_tth(d, wavelength)
    assert tth_to_q(tth, wavelength) == pytest.approx(2 * np.pi / d, rel=1e-12)
    assert q_to_tth(2 * np.pi / d, wavelength) == pytest.approx(tth, rel=1e-12)
    assert to_q(d, "d_A") == pytest.approx(d_to_q(d))
    assert q_to_d(d_to_q(d)) == pytest.approx(d)


def test_calcite_104_under_cu() -> None:
    # calcite (104), d = 3.0354 Å, is the textbook peak near 29.4° 2θ with Cu Kα
    assert bragg_tth(3.0354, CU_KALPHA) == pytest.approx(29.42, abs=0.02)


@settings(max_examples=50, deadline=None)
@given(tth=st.floats(0.1, 179.0), wavelength=st.floats(0.1, 3.0))
def test_round_trip(tth: float, wavelength: float) -> None:
    q = tth_to_q(tth, wavelength)
    assert q_to_tth(q, wavelength) == pytest.approx(tth, rel=1e-9, abs=1e-9)
    assert to_q(q * 10, "q_nm^-1") == pytest.approx(q)
    assert to_q(tth, "2th_deg", wavelength) == pytest.approx(q)


def test_unreachable_q_is_nan() -> None:
    assert np.isnan(q_to_tth(5.0, 3.0))  # 4π/λ ≈ 4.19 Å⁻¹ is the largest reachable Q


def test_to_q_errors() -> None:
    with pytest.raises(ValueError, match="wavelength"):
        to_q([10.0], "2th_deg")
    with pytest.raises(ValueError, match="unknown"):
        to_q([10.0], "chi_deg")


def test_energy() -> None:
    assert energy_to_wavelength(22.1) == pytest.approx(0.561, abs=0.001)


@pytest.mark.parametrize(
    ("name", "unit"),
    [
        ("2th_deg", "2th_deg"),
        ("2theta", "2th_deg"),
        ("Q", "q_A^-1"),
        ("q_Å^-1", "q_A^-1"),
        ("Q_NM^-1", "q_nm^-1"),
        ("d", "d_A"),
        (" d_A ", "d_A"),
    ],
)
def test_normalize_unit(name: str, unit: str) -> None:
    assert normalize_unit(name) == unit
    assert unit in UNITS


def test_normalize_unit_unknown() -> None:
    with pytest.raises(ValueError, match="unknown x unit"):
        normalize_unit("r_mm")
