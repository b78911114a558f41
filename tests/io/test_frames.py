"""Frames in: reading stacks, integration with pyFAI, masks, the automatic anvil-spot mask, and clear
errors per frame while the rest of a batch runs."""

from __future__ import annotations

from pathlib import Path

import fabio
import h5py
import hdf5plugin
import numpy as np
import pytest
from helpers import WAVELENGTH, grain_frame

from xrdmtl.errors import FrameError
from xrdmtl.io.frames import Integrator, load_mask, patterns_from_frames, read_frames
from xrdmtl.physics.phases import get_phase
from xrdmtl.physics.units import q_to_tth
from xrdmtl.synthesis.frames import FrameConfig, FrameSimulator


@pytest.fixture(scope="module")
def sim() -> FrameSimulator:
    return FrameSimulator()


@pytest.fixture(scope="module")
def poni(sim: FrameSimulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("geom") / "sim.poni"
    sim.ai.write(str(path))
    return path


@pytest.fixture(scope="module")
def integrator(poni: Path) -> Integrator:
    return Integrator(poni)


def test_hdf5_stack_yields_each_frame(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    stack = np.arange(3 * 8 * 6, dtype=np.uint16).reshape(3, 8, 6)
    with h5py.File(path, "w") as f:
        f.create_dataset("entry/data/data", data=stack)
    items = list(read_frames(path))
    assert [label for label, _ in items] == [f"{path}::{i}" for i in range(3)]
    assert np.array_equal(items[2][1], stack[2])


def test_eiger_master_with_compressed_linked_data(tmp_path: Path) -> None:
    for k, n in ((1, 2), (2, 3)):
        with h5py.File(tmp_path / f"run_data_{k:06d}.h5", "w") as f:
            f.create_dataset(
                "entry/data/data",
                data=np.full((n, 8, 6), k, np.uint32),
                chunks=(1, 8, 6),
                **hdf5plugin.Bitshuffle(cname="lz4"),
            )
    master = tmp_path / "run_master.h5"
    with h5py.File(master, "w") as f:
        f.create_group("entry/data")
        for k in (1, 2):
            f[f"entry/data/data_{k:06d}"] = h5py.ExternalLink(
                f"run_data_{k:06d}.h5", "entry/data/data"
            )
    items = list(read_frames(master))
    assert [label.rsplit("::", 1)[1] for label, _ in items] == ["0", "1", "2", "3", "4"]
    assert [int(frame[0, 0]) for _, frame in items] == [1, 1, 2, 2, 2]


def test_multiframe_edf(tmp_path: Path) -> None:
    path = tmp_path / "multi.edf"
    img = fabio.edfimage.EdfImage(data=np.zeros((4, 5), np.int32))
    img.append_frame(data=np.ones((4, 5), np.int32))
    img.write(str(path))
    assert [label for label, _ in read_frames(path)] == [f"{path}::0", f"{path}::1"]


def test_integrator_matches_pyfai(sim: FrameSimulator, integrator: Integrator) -> None:
    s = sim.sample(np.random.default_rng(0))
    p = integrator.integrate(s.frame, source="f")
    ref = integrator.ai.integrate1d(
        np.where(s.frame < 0, 0, s.frame).astype(np.float32),
        integrator.npt,
        unit="2th_deg",
        method=("no", "csr", "cython"),
    )
    assert p.unit == "2th_deg" and p.wavelength == pytest.approx(0.561)
    common = np.isin(ref.radial, p.x)
    assert np.allclose(p.y, ref.intensity[common], rtol=1e-3, atol=1e-2)


def test_errors_per_frame_while_others_run(
    tmp_path: Path, poni: Path, integrator: Integrator, sim: FrameSimulator
) -> None:
    good = tmp_path / "good.edf"
    fabio.edfimage.EdfImage(data=sim.sample(np.random.default_rng(1)).frame).write(str(good))
    wrong = tmp_path / "wrong.edf"
    fabio.edfimage.EdfImage(data=np.ones((100, 120), np.int32)).write(str(wrong))
    corrupt = tmp_path / "corrupt.edf"
    corrupt.write_bytes(b"{\nHeaderID = EH:000001 ;\nDim_1 = 768 ;\nDim_2 = 768 ;\n" + b"\x00" * 40)
    results = [r for path in (wrong, corrupt, good) for r in patterns_from_frames(path, integrator)]
    assert len(results) == 3
    (l1, e1), (l2, e2), (l3, p3) = results
    assert isinstance(e1, FrameError) and "wrong.edf" in str(e1) and "(100, 120)" in str(e1)
    assert isinstance(e2, FrameError) and "corrupt.edf" in str(e2)
    assert not isinstance(p3, FrameError) and l3 == str(good) and p3.y.max() > 0


def test_missing_and_corrupt_poni(tmp_path: Path) -> None:
    with pytest.raises(FrameError, match="not found"):
        Integrator(tmp_path / "nope.poni")
    bad = tmp_path / "bad.poni"
    bad.write_text("this is not a geometry\n\x00\x01")
    with pytest.raises(FrameError, match="bad.poni"):
        Integrator(bad)


def test_load_mask_formats(tmp_path: Path) -> None:
    mask = np.zeros((6, 7), bool)
    mask[2, 3] = True
    np.save(tmp_path / "m.npy", mask)
    fabio.edfimage.EdfImage(data=mask.astype(np.uint8)).write(str(tmp_path / "m.edf"))
    fabio.tifimage.TifImage(data=mask.astype(np.uint8)).write(str(tmp_path / "m.tif"))
    for name in ("m.npy", "m.edf", "m.tif"):
        assert np.array_equal(load_mask(tmp_path / name), mask), name
    with pytest.raises(FrameError):
        load_mask(tmp_path / "absent.npy")


@pytest.mark.parametrize("spots", [(3.0, 30.0), (2e3, 2e4)], ids=["spotty", "smooth"])
def test_auto_mask_finds_anvil_spots_and_spares_rings(
    sim: FrameSimulator, integrator: Integrator, spots: tuple[float, float]
) -> None:
    cfg = FrameConfig(p_target=1.0, spots_per_ring=spots)
    s2 = FrameSimulator(sim.targets, sim.distractors, sim.geometry, cfg)
    rng = np.random.default_rng(7)
    for _ in range(2):
        s = s2.sample(rng)
        m = integrator.auto_mask(s.frame)
        bright = s.spot_counts >= 20 * s.info["background"]  # anvil-spot pixels 20× the background
        assert m[bright].mean() >= 0.95 if bright.any() else True
        if s.spot_counts.sum() > s.info["background"]:  # spots worth one background pixel
            assert (s.spot_counts * m).sum() / s.spot_counts.sum() >= 0.8
        # sample signal stays: at most 1 % of the rings' intensity (crystallite spots too) is masked
        ring = s.ring_counts * ~s.spot_mask
        assert (ring * m).sum() <= 0.01 * ring.sum()


def test_auto_mask_patterns(sim: FrameSimulator, integrator: Integrator, tmp_path: Path) -> None:
    s = sim.sample(np.random.default_rng(9))
    path = tmp_path / "f.edf"
    fabio.edfimage.EdfImage(data=s.frame).write(str(path))
    ((_, auto),) = patterns_from_frames(path, integrator, mask="auto")
    ((_, none),) = patterns_from_frames(path, integrator, mask="none")
    ((_, true),) = patterns_from_frames(path, integrator, mask=s.spot_mask)
    assert np.abs(auto.y - true.y).max() < 0.1 * np.abs(none.y - true.y).max()


def test_grain_spots_on_named_lines_are_kept(tmp_path: Path) -> None:
    """The auto mask takes bright compact crystallite spots for anvil spots; with the sample's lines
    named (here calcite's, at its reference cell) those on a line are kept, the anvil spot off every
    line is still masked, and naming no line gives the auto mask of before."""
    frame, grains, anvil = grain_frame(str(tmp_path / "tiny.poni"))
    integrator = Integrator(tmp_path / "tiny.poni")
    before = integrator.auto_mask(frame)
    assert before[grains].mean() > 0.9 and before[anvil].all()
    lines = q_to_tth(get_phase("calcite").reflections(WAVELENGTH).q, WAVELENGTH)
    kept, spared = integrator.grain_mask(frame, lambda _: (lines, np.zeros(lines.size)))
    assert kept[grains].mean() < 0.05 and kept[anvil].all()
    assert spared >= 20  # of the 24 spots, three on each of eight lines
    none, spared = integrator.grain_mask(frame, lambda _: (np.zeros(0), np.zeros(0)))
    assert np.array_equal(none, before) and spared == 0
