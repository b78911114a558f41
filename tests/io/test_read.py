"""The one reader: any path (1D file, 2D frame, frame stack) into patterns, the same for every command."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from pyFAI.detectors import Detector
from pyFAI.integrator.azimuthal import AzimuthalIntegrator

from xrdmtl.errors import FrameError, XrdmtlError
from xrdmtl.io.read import ReadOptions, read_files, read_path
from xrdmtl.physics.pattern import Pattern

WAVELENGTH = 0.561


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    det = Detector(pixel1=172e-6, pixel2=172e-6, max_shape=(96, 96))
    ai = AzimuthalIntegrator(
        dist=0.02, poni1=0.0083, poni2=0.0083, detector=det, wavelength=WAVELENGTH * 1e-10
    )
    ai.save(str(tmp_path / "geometry.poni"))
    rng = np.random.default_rng(0)
    np.save(tmp_path / "frame.npy", rng.poisson(100, (96, 96)).astype(np.float32))
    with h5py.File(tmp_path / "run.h5", "w") as f:
        f["entry/data/data"] = rng.poisson(100, (3, 96, 96)).astype(np.int32)
    tth = np.linspace(2, 30, 1500)
    np.save(tmp_path / "one_d.npy", np.stack([tth, 10 + np.exp(-(((tth - 12) / 0.1) ** 2))]))
    return {
        "poni": tmp_path / "geometry.poni",
        "frame": tmp_path / "frame.npy",
        "stack": tmp_path / "run.h5",
        "one_d": tmp_path / "one_d.npy",
    }


def test_a_2d_npy_frame_reads_with_a_geometry_only(files: dict[str, Path]) -> None:
    with_geometry = ReadOptions(wavelength=WAVELENGTH, poni=files["poni"])
    (item,) = read_files([str(files["frame"])], with_geometry)
    assert isinstance(item, Pattern) and item.unit == "2th_deg"
    (item,) = read_files([str(files["frame"])], ReadOptions(wavelength=WAVELENGTH))
    assert isinstance(item, XrdmtlError)  # 96 × 96 is no 2 × N pattern


def test_frames_of_a_stack_by_index_and_1d_files_alike(files: dict[str, Path]) -> None:
    stack = str(files["stack"])
    opts = ReadOptions(wavelength=WAVELENGTH, poni=str(files["poni"]), mask="none")
    items = read_files([f"{stack}::2", str(files["one_d"]), f"{stack}::7", stack], opts)
    assert isinstance(items[0], Pattern) and items[0].source.endswith("::2")
    assert isinstance(items[1], Pattern) and items[1].wavelength == WAVELENGTH
    assert isinstance(items[2], XrdmtlError) and "no frame '7'" in str(items[2])
    assert isinstance(items[3], Pattern)  # a stack named alone: its first frame
    assert [label for label, _ in read_path(stack, opts)] == [f"{stack}::{i}" for i in range(3)]


def test_a_frame_without_geometry_is_one_clear_error(files: dict[str, Path]) -> None:
    ((label, item),) = list(read_path(str(files["stack"]), ReadOptions()))
    assert label == str(files["stack"]) and isinstance(item, FrameError) and "--poni" in str(item)


def test_reading_options_of_the_old_keyword_form_get_a_clear_error(files) -> None:
    """A wavelength where a ReadOptions belongs (the options were once separate keywords) says
    what to pass, before any work; None is the defaults."""
    from xrdmtl.io.labels import load_labeled
    from xrdmtl.io.read import checked_options
    from xrdmtl.physics.grid import QGrid

    assert checked_options(None) == ReadOptions()
    opts = ReadOptions(wavelength=WAVELENGTH)
    assert checked_options(opts) is opts
    labels = files["one_d"].parent / "labels.csv"
    labels.write_text("file,calcite\none_d.npy,1\n")
    with pytest.raises(TypeError, match=r"ReadOptions\(wavelength=0\.561\).*float 0\.561"):
        load_labeled(labels, ["calcite"], QGrid(), 0.561)  # type: ignore[arg-type]
    data, used, failed = load_labeled(labels, ["calcite"], QGrid(), opts)
    assert len(used) == 1 and not failed and data.labels.tolist() == [[1]]
