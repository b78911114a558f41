"""The 2D frame simulator: rings where the crystallography puts them, anvil spots that the true mask
removes, graininess, determinism, and the ``simulate frames`` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from xrdmtl.cli.app import app
from xrdmtl.io.frames import Integrator
from xrdmtl.outputs import MARKER
from xrdmtl.physics.units import q_to_tth
from xrdmtl.synthesis.frames import GAP_VALUE, FrameConfig, FrameSimulator, geometry_for

SMOOTH = FrameConfig(
    p_target=1.0,
    p_distractor=0.0,
    ring_ratio=(4.0, 4.0),
    ring_ratio_phase=(),
    background=(200.0, 200.0),
    spots_per_ring=(2e4, 2e4),
    spots_phase=(),
    texture=(0.0, 0.2),
    anvil_spots=(2, 3),
    anvil_strength=(5e3, 5e4),
)


@pytest.fixture(scope="module")
def sim() -> FrameSimulator:
    return FrameSimulator(config=SMOOTH)


@pytest.fixture(scope="module")
def integrator(sim: FrameSimulator, tmp_path_factory: pytest.TempPathFactory) -> Integrator:
    poni = tmp_path_factory.mktemp("geom") / "sim.poni"
    sim.ai.write(str(poni))
    return Integrator(poni)


def test_rings_of_each_phase_at_their_two_theta(
    sim: FrameSimulator, integrator: Integrator
) -> None:
    s = sim.sample(np.random.default_rng(5))
    assert s.labels.tolist() == [1, 1, 1]
    p = integrator.integrate(s.frame, mask=s.spot_mask)
    for phase in sim.targets:
        scale = s.info[phase.name]["lattice_scale"]
        refl = phase.reflections(sim.geometry.wavelength).strongest(3)
        for k, tth in enumerate(q_to_tth(refl.q / scale, sim.geometry.wavelength)):
            near = np.abs(p.x - tth) < 0.08
            around = np.abs(p.x - tth) < 1.0
            assert p.y[near].max() > (1.5 if k == 0 else 1.1) * np.median(p.y[around]), (
                phase.name,
                tth,
            )
            if k:  # weaker rings may sit on a neighbour's flank
                continue
            # the strongest ring's maximum sits at the reflection (within one pixel's 2θ width)
            window = np.abs(p.x - tth) < 0.15
            assert abs(p.x[window][np.argmax(p.y[window])] - tth) < integrator.pixel_deg


def test_true_mask_removes_anvil_spots(sim: FrameSimulator, integrator: Integrator) -> None:
    s = sim.sample(np.random.default_rng(11))
    assert s.spot_mask.any()
    spots_only = s.spot_counts + 1.0  # offset: a pattern may not be constant
    leak = integrator.integrate(spots_only).y - 1.0
    masked = integrator.integrate(spots_only, mask=s.spot_mask).y - 1.0
    assert leak.max() > 5
    assert masked.max() < 0.02 * leak.max()
    unmasked = integrator.integrate(s.frame).y
    with_mask = integrator.integrate(s.frame, mask=s.spot_mask).y
    assert (unmasked - with_mask).max() > 0.5 * leak.max()


def test_frame_format_and_gaps(sim: FrameSimulator) -> None:
    s = sim.sample(np.random.default_rng(2))
    assert s.frame.dtype == np.int32 and s.frame.shape == (768, 768)
    gap = np.asarray(sim.ai.detector.mask, bool)
    assert gap.sum() > 10_000 and (s.frame[gap] == GAP_VALUE).all()
    assert (s.frame[~gap] >= 0).all() and not s.spot_mask[gap].any()


def test_deterministic_by_seed(sim: FrameSimulator) -> None:
    a = sim.sample(np.random.default_rng(3))
    b = sim.sample(np.random.default_rng(3))
    assert np.array_equal(a.frame, b.frame) and np.array_equal(a.spot_mask, b.spot_mask)
    assert a.info == b.info


def test_few_crystals_make_spotty_rings(sim: FrameSimulator) -> None:
    def ring_contrast(spots: float) -> float:
        cfg = FrameConfig(
            p_target=1.0,
            p_distractor=0.0,
            ring_ratio=(20.0, 20.0),
            background=(50.0, 50.0),
            spots_per_ring=(spots, spots),
            grain_spot_max=1e6,
            texture=(0.0, 0.0),
            anvil_spots=(0, 0),
            stray_spots=(0, 0),
            hot_pixels=(0, 0),
            hump=(0.2, 0.2),
        )
        calcite = sim.targets[1]
        s = FrameSimulator([calcite], [], sim.geometry, cfg).sample(np.random.default_rng(0))
        q = (
            calcite.reflections(sim.geometry.wavelength).strongest(1).q
            / s.info["calcite"]["lattice_scale"]
        )
        annulus = (
            np.abs(sim.tth - q_to_tth(q, sim.geometry.wavelength)).reshape(s.frame.shape) < 0.02
        )
        values = s.frame[annulus & (s.frame >= 0)].astype(float)
        return float(values.std() / values.mean())  # along the azimuth of the strongest ring

    assert ring_contrast(5.0) > 3.0 > 0.5 > ring_contrast(1e5)


def test_integrated_frames_look_like_measured_hdac(
    sim: FrameSimulator, integrator: Integrator
) -> None:
    """Default ranges: rings a few per cent to a few times above a large smooth background, low
    relative noise, anvil leaks small once averaged over their ring (as in shared/data/hdac)."""
    default = FrameSimulator(sim.targets, sim.distractors, sim.geometry)
    rng = np.random.default_rng(21)
    ratios, leaks = [], []
    for _ in range(6):
        s = default.sample(rng)
        un = integrator.integrate(s.frame).y
        ma = integrator.integrate(s.frame, mask=s.spot_mask).y
        ok = (integrator.integrate(s.frame).x > 5) & (integrator.integrate(s.frame).x < 25)
        floor = np.percentile(ma[ok], 5)
        assert floor > 500  # counts per pixel: a large background
        ratios += [s.info[p]["ratio"] for p in s.info["phases"] if p in ("calcite", "bastnaesite")]
        leaks.append(float(((un - ma)[ok] / ma[ok]).max()))
    assert all(0.03 <= r <= 1.5 for r in ratios)
    assert np.median(leaks) < 0.2


def test_wavelength_sets_geometry() -> None:
    g = geometry_for(0.3)
    assert g.wavelength == 0.3 and g.distance > geometry_for(0.561).distance


def test_simulate_frames_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        res = runner.invoke(
            app, ["simulate", "frames", "--n", "2", "--out", str(out), "--seed", "4"]
        )
        assert res.exit_code == 0, res.output
    a, b = outs
    # every file but the output marker, which records when each file was written (docs/outputs.md)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != MARKER)
    assert files == sorted(
        p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name != MARKER
    )
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    names = {str(f) for f in files}
    assert {
        "geometry.poni",
        "labels.csv",
        "truth.csv",
        "frames/frame_00001.edf",
        "masks/frame_00001.edf",
        "unmasked/frame_00000.dat",
        "masked/labels.csv",
    } <= names
    lines = (a / "labels.csv").read_text().splitlines()
    assert lines[0] == "file,bastnaesite,calcite,rhenium" and lines[1].startswith(
        "frames/frame_00000.edf,"
    )
    assert (
        (a / "unmasked" / "labels.csv").read_text().splitlines()[1].startswith("frame_00000.dat,")
    )
    header = (a / "masked" / "frame_00000.dat").read_text()
    assert '"wavelength": 5.61' in header and "#2th_deg" in header


def test_holdout_preset_draws_strained_textured_frames_with_unknown_rings() -> None:
    import dataclasses

    from xrdmtl.synthesis.frames import HOLDOUT, HOLDOUT_WAVELENGTH

    cfg = dataclasses.replace(HOLDOUT, p_target=1.0, p_unknown=1.0, hot_pixels=(0, 0))
    sim = FrameSimulator(geometry=geometry_for(HOLDOUT_WAVELENGTH), config=cfg)
    s = sim.sample(np.random.default_rng(8))
    assert s.labels.all()
    for name in ("bastnaesite", "calcite", "rhenium"):
        meta = s.info[name]
        assert 0.98 <= meta["lattice_scale"] <= 1.02 and abs(meta["aniso"]) <= 0.01
        assert meta["visible"] >= HOLDOUT.min_visible
    assert any(p.startswith("unknown") for p in s.info["phases"])
    assert s.ring_counts is not None and s.ring_counts.shape == s.frame.shape
    assert s.ring_counts[s.ring_pixels].min() > 0


def test_few_crystal_preset_puts_each_grain_spot_on_its_ring() -> None:
    """FEW_CRYSTAL (issue 29): a handful of grains, each spot centred at its reflection's exact 2θ,
    where HOLDOUT scatters spots about a FWHM off their ring."""
    import dataclasses

    from xrdmtl.synthesis.frames import FEW_CRYSTAL, HOLDOUT_WAVELENGTH

    def offset(scatter: float) -> float:
        cfg = dataclasses.replace(
            FEW_CRYSTAL,
            p_target=1.0,
            p_unknown=0.0,
            p_distractor=0.0,
            hot_pixels=(0, 0),
            anvil_spots=(0, 0),
            stray_spots=(0, 0),
            fwhm_q=(0.08, 0.08),
            grain_scatter=scatter,
            grain_profile=0.0,  # narrow spots: the offset measures the scatter alone
        )
        sim0 = FrameSimulator(geometry=geometry_for(HOLDOUT_WAVELENGTH), config=cfg)
        calcite = sim0.targets[1]
        sim = FrameSimulator([calcite], [], sim0.geometry, cfg, keep_parts=True)
        s = sim.sample(np.random.default_rng(5))
        assert s.info["calcite"]["spots_per_ring"] <= 30.0
        assert s.phase_counts is not None
        counts = s.phase_counts["calcite"]
        meta = s.info["calcite"]
        refl = calcite.reflections(sim.geometry.wavelength)
        tth = q_to_tth(np.asarray(refl.q) / meta["lattice_scale"], sim.geometry.wavelength)
        near = np.abs(sim.tth[:, None] - tth[np.isfinite(tth)][None]).min(axis=1)
        bright = counts > 0.2 * counts.max()  # the grain spots' cores
        return float(np.average(near[bright], weights=counts[bright]))

    exact, scattered = offset(0.0), offset(1.0)
    assert exact < 0.5 * scattered


def test_grain_spot_centres_lie_at_their_exact_two_theta(sim: FrameSimulator) -> None:
    """A crystallite's spot is centred at its reflection's 2θ, not at the centre of the pixel it
    falls on (the pixel grid would scatter a few-crystal line by up to a pixel, a third of a FWHM)."""
    from scipy.ndimage import map_coordinates

    rng = np.random.default_rng(3)
    tth = rng.uniform(6.0, 20.0, 500)
    pix, keep = sim._pixels_at(tth, rng)
    jitter = rng.uniform(-0.5, 0.5, (pix.size, 2))
    centres = sim._on_ring(pix, tth[keep], jitter)
    at = map_coordinates(sim.tth.reshape(sim.shape), centres.T, order=1)
    assert np.abs(at - tth[keep]).max() < 0.02 * sim.pixel_deg
    rows, cols = np.divmod(pix, sim.shape[1])
    assert np.abs(centres - np.stack([rows, cols], 1)).max() < 1.5  # still on that pixel's ring


def test_an_unknown_phase_without_reflections_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A random cell whose every reflection was extinguished (a small cubic cell keeps none with
    probability ≈ 0.4⁸) draws no unknown phase instead of failing the frame."""
    import dataclasses

    import xrdmtl.synthesis.patterns as patterns
    from xrdmtl.synthesis.frames import HOLDOUT

    empty = (np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0))
    monkeypatch.setattr(patterns, "random_cell_reflections", lambda rng, **kw: empty)
    sim = FrameSimulator(config=dataclasses.replace(HOLDOUT, p_unknown=1.0))
    s = sim.sample(np.random.default_rng(0))
    assert not any(p.startswith("unknown") for p in s.info["phases"])
