"""Synthetic 1D patterns: positions, distortions, labels, determinism, CLI output."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from typer.testing import CliRunner

from xrdmtl.cli.app import app
from xrdmtl.io.readers import load_pattern
from xrdmtl.physics.grid import DEFAULT_GRID
from xrdmtl.physics.phases import Phase, builtin_cif_dir
from xrdmtl.physics.profiles import pseudo_voigt_area
from xrdmtl.synthesis.patterns import SynthConfig, Synthesizer, grain_peaks

# no distortion: one synchrotron wavelength, sharp peaks, no strain, texture, crystal statistics,
# absorption, confusers, gaps or noise to speak of
IDEAL = SynthConfig(
    p_present=1.0,
    p_unmasked=0.0,
    p_lab=0.0,
    synchrotron_wavelength=(0.561, 0.561),
    synchrotron_tth=(0.5, 0.5, 45.0, 45.0),
    p_gaps=0.0,
    instrument_fwhm_deg=(0.05, 0.05),
    crystallite_size=(1e9, 1e9),
    microstrain=(0.0, 0.0),
    eta=(0.0, 0.0),
    anisotropic_strain=0.0,
    zero_offset_deg=0.0,
    p_texture=0.0,
    crystals=(1e9, 1e9),
    absorption_mu_t=(0.0, 0.0),
    snr=(1e4, 1e4),
    p_distractor_phase=(1.0, 0.0, 0.0),
    p_random_peaks=0.0,
    p_spots=0.0,
    p_spots_masked=0.0,
    counts=(1e10, 1e10),
    noise_boost_masked=(1.0, 1.0),
    residual_bumps=(0, 0),
    lattice_coverage=None,
    p_amorphous=0.0,
)


@pytest.fixture(scope="module")
def calcite() -> Phase:
    return Phase.from_cif(builtin_cif_dir() / "calcite_COD9000095.cif", name="calcite").with_priors(
        lattice_range=(1.0, 1.0)
    )


@pytest.fixture(scope="module")
def rhenium() -> Phase:
    return Phase.from_cif(builtin_cif_dir() / "rhenium_Re.cif", name="rhenium").with_priors(
        lattice_range=(1.0, 1.0)
    )


def _strong(phase: Phase, k: int = 4) -> np.ndarray:
    """Q of the ``k`` strongest reflections on the grid with no other within 0.03 Å⁻¹."""
    r = phase.reflections(0.561, q_max=DEFAULT_GRID.q_max - 0.05)
    q = r.q[r.intensity > 0.5]
    near = np.array([np.sum(np.abs(q - v) < 0.03) > 1 for v in r.q])
    r = r.take(np.flatnonzero((r.q > DEFAULT_GRID.q_min + 0.05) & ~near))
    return r.strongest(k).q


def _local_peak(y: np.ndarray, q: float, half: int = 6) -> tuple[float, float]:
    """(Q of the local maximum, its height) within ``half`` grid steps of ``q``."""
    i = int(round(DEFAULT_GRID.index(q)))
    j = i - half + int(np.argmax(y[i - half : i + half + 1]))
    return float(DEFAULT_GRID.values[j]), float(y[j])


def test_batch_shapes_and_types(calcite: Phase, rhenium: Phase) -> None:
    b = Synthesizer([calcite, rhenium], distractors=[]).sample(40, np.random.default_rng(0))
    assert b.intensity.shape == b.coverage.shape == (40, DEFAULT_GRID.n)
    assert b.intensity.dtype == np.float32 and b.coverage.dtype == bool
    assert b.labels.shape == (40, 2) and b.labels.dtype == np.uint8
    assert np.isfinite(b.intensity).all() and b.coverage.any(axis=1).all()
    assert b.unmasked.any() and (~b.unmasked).any()


def test_ideal_peaks_sit_at_reflections(calcite: Phase) -> None:
    b = Synthesizer([calcite], distractors=[], config=IDEAL).sample(2, np.random.default_rng(1))
    for q in _strong(calcite):
        found, _ = _local_peak(b.intensity[0], q)
        assert abs(found - q) <= DEFAULT_GRID.step


def test_strain_shifts_peaks_by_the_set_fraction(calcite: Phase) -> None:
    b = Synthesizer(
        [calcite.with_priors(lattice_range=(1.01, 1.01))], distractors=[], config=IDEAL
    ).sample(1, np.random.default_rng(2))
    assert np.allclose(b.lattice_scale, 1.01)
    for q in _strong(calcite):
        found, _ = _local_peak(b.intensity[0], q / 1.01)
        assert abs(found - q / 1.01) <= DEFAULT_GRID.step


@pytest.mark.parametrize(
    ("change", "steps"),
    [
        ({"p_texture": 1.0, "march_r": (0.5, 0.5)}, 1),
        # a few grains: grain peaks scatter about the ring by at most ~3 × 1.2 FWHM (~12 points)
        ({"crystals": (1.0, 1.0)}, 14),
    ],
)
def test_texture_and_few_crystals_change_intensities_not_positions(
    calcite: Phase, change: dict, steps: int
) -> None:
    qs = _strong(calcite, 6)
    ideal = Synthesizer([calcite], distractors=[], config=IDEAL).sample(1, np.random.default_rng(3))
    ref = np.array([_local_peak(ideal.intensity[0], q)[1] for q in qs]) - np.median(
        ideal.intensity[0]
    )
    syn = Synthesizer([calcite], distractors=[], config=dataclasses.replace(IDEAL, **change))
    b = syn.sample(8, np.random.default_rng(3))
    ratios = []
    for y in b.intensity:
        peaks = [_local_peak(y, q, max(6, steps)) for q in qs]
        heights = np.array([h for _, h in peaks]) - np.median(y)  # over the background
        for (found, h), q in zip(peaks, qs, strict=True):
            if h > 0.05 * heights.max():  # visible peaks stay where they belong
                assert abs(found - q) <= steps * DEFAULT_GRID.step
        ratios.append(heights / heights.max() - ref / ref.max())
    assert np.abs(ratios).max() > 0.05  # calcite, r = 0.5: 6–9 % on these reflections


def test_labels_match_what_was_drawn(calcite: Phase, rhenium: Phase) -> None:
    cfg = dataclasses.replace(IDEAL, p_present=0.5)
    b = Synthesizer([calcite, rhenium], distractors=[], config=cfg).sample(
        40, np.random.default_rng(4)
    )
    assert 0 < b.labels.mean() < 1
    # calcite (104) at 2.07 Å⁻¹ and rhenium (101) at 2.98 Å⁻¹: nothing of the other phase nearby
    for j, q in enumerate((2.07, 2.98)):
        _, peak = zip(*(_local_peak(y, q) for y in b.intensity), strict=True)
        base = np.median(b.intensity, axis=1)
        stands = np.array(peak) - base > 1e8  # peaks 1e4 σ = 1e9 high, σ = √1e10
        assert (stands == b.labels[:, j].astype(bool)).all()


def test_deterministic_by_seed(calcite: Phase, rhenium: Phase) -> None:
    syn = Synthesizer([calcite, rhenium])
    a, b = syn.sample(30, np.random.default_rng(7)), syn.sample(30, np.random.default_rng(7))
    c = syn.sample(30, np.random.default_rng(8))
    assert np.array_equal(a.intensity, b.intensity) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.intensity, c.intensity)


def test_cli_simulate_patterns_round_trip(tmp_path) -> None:
    out = tmp_path / "sim"
    res = CliRunner().invoke(
        app,
        [
            "simulate",
            "patterns",
            "--n",
            "4",
            "--out",
            str(out),
            "--seed",
            "3",
            "--wavelength",
            "0.561",
        ],
    )
    assert res.exit_code == 0, res.output
    lines = (out / "labels.csv").read_text().splitlines()
    assert lines[0] == "file,bastnaesite,calcite,rhenium" and len(lines) == 5
    for line in lines[1:]:
        name, *labels = line.split(",")
        assert set(labels) <= {"0", "1"}
        pattern = load_pattern(out / name)
        assert pattern.unit == "2th_deg" and pattern.wavelength == pytest.approx(0.561)
    again = tmp_path / "again"
    CliRunner().invoke(
        app,
        [
            "simulate",
            "patterns",
            "--n",
            "4",
            "--out",
            str(again),
            "--seed",
            "3",
            "--wavelength",
            "0.561",
        ],
    )
    assert (again / "labels.csv").read_text() == (out / "labels.csv").read_text()
    assert (again / lines[1].split(",")[0]).read_text() == (
        out / lines[1].split(",")[0]
    ).read_text()


def test_cli_simulate_patterns_h5(tmp_path) -> None:
    import h5py

    res = CliRunner().invoke(
        app, ["simulate", "patterns", "--n", "5", "--out", str(tmp_path), "--format", "h5"]
    )
    assert res.exit_code == 0, res.output
    with h5py.File(tmp_path / "patterns.h5") as f:
        assert f["intensity"].shape == (5, DEFAULT_GRID.n)
        labels = f["labels"][:]
    rows = (tmp_path / "labels.csv").read_text().splitlines()[1:]
    assert [list(map(int, r.split(",")[1:])) for r in rows] == labels.tolist()


def test_traces_are_drawn_but_labeled_absent(calcite: Phase) -> None:
    """An absent target may leave a trace far under the detection limit (a raw integration's
    0.1–1 % bump): its peaks are in the pattern, its label is 0."""
    cfg = dataclasses.replace(
        IDEAL,
        p_present=0.0,
        p_unmasked=1.0,
        trace_pbr=(0.01, 0.01),
        counts_unmasked=(1e10, 1e10),
        noise_boost_unmasked=(1.0, 1.0),
    )
    traced = calcite.with_priors(p_trace=1.0)
    b = Synthesizer([traced], distractors=[], config=cfg).sample(6, np.random.default_rng(5))
    # the same draws with a vanishing trace: the difference is the trace alone
    faint = Synthesizer(
        [traced], distractors=[], config=dataclasses.replace(cfg, trace_pbr=(1e-9, 1e-9))
    )
    diff = b.intensity - faint.sample(6, np.random.default_rng(5)).intensity
    assert (b.labels == 0).all()
    i = int(round(DEFAULT_GRID.index(_strong(calcite, 1)[0])))
    assert (
        diff[:, i - 3 : i + 4].max(axis=1) > 0.005 * b.intensity[:, i]
    ).all()  # ≈ 1 % of the background
    assert (np.abs(diff).max(axis=1) < 0.02 * b.intensity.max(axis=1)).all()  # and no more


def test_peak_to_background_per_phase(calcite: Phase, rhenium: Phase) -> None:
    syn = Synthesizer(
        [calcite, rhenium.with_priors(peak_to_background=(0.5, 30.0))],
        distractors=[],
        config=SynthConfig(),
    )
    assert syn._pbr.tolist() == [list(SynthConfig().peak_to_background), [0.5, 30.0]]


def test_lattice_coverage_widens_every_phase_and_an_override_wins(
    calcite: Phase, rhenium: Phase
) -> None:
    wide = Synthesizer([calcite, rhenium], distractors=[], config=SynthConfig())
    assert np.allclose(
        wide.lattice_ranges, [[0.978, 1.022], [0.978, 1.022]]
    )  # priors (1, 1) widened
    cfg = SynthConfig(lattice_coverage=(0.97, 1.03), lattice_ranges={"rhenium": (0.999, 1.001)})
    syn = Synthesizer([calcite, rhenium], distractors=[], config=cfg)
    assert np.allclose(syn.lattice_ranges, [[0.97, 1.03], [0.999, 1.001]])
    own = Synthesizer([calcite], distractors=[], config=SynthConfig(lattice_coverage=None))
    assert np.allclose(own.lattice_ranges, [[1.0, 1.0]])


def test_random_cell_phases_and_distractors_join_the_table(calcite: Phase) -> None:
    from xrdmtl.synthesis.patterns import default_distractors, random_cell_reflections

    q, inten, mult, c_frac = random_cell_reflections(np.random.default_rng(0), q_max=5.0)
    assert q.size and np.all(np.diff(q) > 0) and inten.max() == pytest.approx(100.0)
    assert np.all(mult >= 1) and np.all((c_frac >= 0) & (c_frac <= 1 + 1e-9))
    names = {p.name for p in default_distractors([calcite])}
    assert {"gypsum", "magnetite", "quartz", "copper"} <= names and "calcite" not in names
    few = [p for p in default_distractors([calcite]) if p.name in ("quartz", "gypsum")]
    syn = Synthesizer(
        [calcite], distractors=few, config=dataclasses.replace(IDEAL, random_phases=5)
    )
    assert len(syn.lattice_ranges) == 1 + 2 + 5 and syn.table.phase.max() <= 7
    b = syn.sample(16, np.random.default_rng(4))
    assert np.isfinite(b.intensity).all()


def test_a_target_is_labeled_present_only_with_its_own_reflections(calcite: Phase) -> None:
    shown = Synthesizer([calcite], distractors=[], config=IDEAL).sample(8, np.random.default_rng(5))
    assert shown.labels.all()
    # no reflection can be raised to the visibility floor: every drawn target is labeled absent
    hidden = dataclasses.replace(IDEAL, min_shown=3, shown_snr=1e9, max_shown_boost=1.0)
    b = Synthesizer([calcite], distractors=[], config=hidden).sample(8, np.random.default_rng(5))
    assert not b.labels.any()


def test_grain_peaks_keep_each_reflections_intensity_and_split_only_spotty_ones():
    """A reflection seen by few grains becomes 1–max_grain_peaks narrower peaks near it whose areas
    add up to its own; one seen by many grains is passed through untouched."""
    rng = np.random.default_rng(8)
    cfg = SynthConfig()
    n = 400
    grains = np.r_[np.full(n // 2, 1e4), np.exp(rng.uniform(np.log(0.1), np.log(30), n // 2))]
    q = rng.uniform(1, 4, n)
    fwhm = rng.uniform(0.005, 0.05, n)
    eta = rng.uniform(0, 0.8, n)
    height = rng.uniform(1, 100, n)
    src, q2, w2, h2 = grain_peaks(grains, q, fwhm, eta, height, cfg, rng)
    area = np.bincount(src, h2 * pseudo_voigt_area(w2, eta[src]), minlength=n)
    assert np.allclose(area, height * pseudo_voigt_area(fwhm, eta), rtol=1e-6)
    count = np.bincount(src, minlength=n)
    assert (count[: n // 2] == 1).all() and (count >= 1).all()
    assert count.max() <= cfg.max_grain_peaks and count[n // 2 :].max() > 1
    smooth = src < n // 2
    assert np.array_equal(q2[smooth], q[src[smooth]]) and np.array_equal(
        w2[smooth], fwhm[src[smooth]]
    )
    spotty = ~smooth
    assert (w2[spotty] < fwhm[src[spotty]]).all()
    assert (np.abs(q2[spotty] - q[src[spotty]]) < 5 * fwhm[src[spotty]]).all()
