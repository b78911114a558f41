"""Peak-match evidence on synthetic patterns built from a phase's own reflections."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import synthetic

from xrdmtl.physics.peaks import THRESHOLD, find_pattern_peaks, match_all, match_phase, match_phases
from xrdmtl.physics.phases import get_phase
from xrdmtl.physics.units import tth_to_q

WAVELENGTH = 0.561
TARGETS = ("bastnaesite", "calcite", "rhenium")


@pytest.mark.parametrize(
    ("name", "scale"), [("calcite", 1.003), ("rhenium", 0.997), ("bastnaesite", 0.985)]
)
def test_finds_the_phase_and_its_lattice_scale(name: str, scale: float) -> None:
    ev = match_phase(find_pattern_peaks(synthetic({name: scale})), get_phase(name), WAVELENGTH)
    assert ev.score > 0.8
    assert ev.present()
    assert ev.lattice_scale == pytest.approx(scale, abs=0.0011)
    assert len(ev.matched) >= 4
    for m in ev.matched:
        assert abs(m.found_q - m.expected_q) < 0.005
        assert m.z > 4


def test_absent_phases_score_low() -> None:
    evidence = match_phases(synthetic({"calcite": 1.0}, seed=1), [get_phase(n) for n in TARGETS])
    assert evidence["calcite"].present()
    assert evidence["bastnaesite"].score < 0.2
    assert evidence["rhenium"].score < 0.2


def test_noise_only_scores_low() -> None:
    evidence = match_phases(synthetic({}, seed=2), [get_phase(n) for n in TARGETS])
    assert all(ev.score < 0.2 for ev in evidence.values())
    assert all(not ev.present(THRESHOLD) for ev in evidence.values())


def test_missing_strong_reflections_lower_the_score() -> None:
    phase = get_phase("bastnaesite")
    full = match_phase(
        find_pattern_peaks(synthetic({"bastnaesite": 1.0}, seed=3)), phase, WAVELENGTH
    )
    holed = match_phase(
        find_pattern_peaks(synthetic({"bastnaesite": 1.0}, seed=3, drop=(0, 1))), phase, WAVELENGTH
    )
    assert holed.score < full.score - 0.2
    assert {m.hkl for m in holed.missing[:2]} <= {m.hkl for m in full.matched}


def test_shared_peak_goes_to_the_better_supported_phase() -> None:
    peaks = find_pattern_peaks(synthetic({"rhenium": 1.0}, seed=4, height=400.0))
    evidence = match_all(peaks, [get_phase(n) for n in TARGETS], WAVELENGTH)
    assert evidence["rhenium"].score > 0.8
    assert not evidence["calcite"].present()
    assert not evidence["bastnaesite"].present()


def test_noise_and_background_estimates() -> None:
    peaks = find_pattern_peaks(synthetic({}, seed=5))
    assert peaks.noise == pytest.approx(1.0, rel=0.35)
    cov = peaks.coverage
    assert np.abs(np.median(peaks.detrended[cov])) < 1.0
    lo, hi = peaks.q_range
    assert lo == pytest.approx(tth_to_q(4.5, WAVELENGTH), abs=0.01)
    assert hi == pytest.approx(tth_to_q(24.99, WAVELENGTH), abs=0.01)
