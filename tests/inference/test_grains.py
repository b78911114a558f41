"""Grain spots kept by ``--mask auto``: spots on a line of a phase the check finds evident are sample."""

from __future__ import annotations

from pathlib import Path

import fabio
import numpy as np
import pytest
from helpers import grain_frame

from xrdmtl.inference.grains import evident_lines
from xrdmtl.inference.predictor import Predictor
from xrdmtl.inference.verify import PhaseCheck
from xrdmtl.io.read import ReadOptions, read_path
from xrdmtl.physics.units import q_to_tth


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor()


def _check(lines: float, q: list[float], fwhm: float) -> PhaseCheck:
    nan = float("nan")
    ticks = tuple(((k, 0, 0), v) for k, v in enumerate(q))
    return PhaseCheck(lines, nan, 0.5, 0.5, nan, nan, nan, nan, fwhm, 0.0, (), ticks)


def test_evident_lines_are_those_of_evident_phases_in_two_theta() -> None:
    checks = {"seen": _check(4.0, [2.0, 3.0], 0.02), "unseen": _check(0.2, [2.5], 0.02)}
    centres, half = evident_lines(checks, 0.561, min_lines=1.0)
    assert np.allclose(centres, q_to_tth(np.array([2.0, 3.0]), 0.561))
    width = q_to_tth(np.array([2.01, 3.01]), 0.561) - q_to_tth(np.array([1.99, 2.99]), 0.561)
    assert np.allclose(half, width / 2)
    assert evident_lines(checks, 0.561, min_lines=5.0)[0].size == 0


def test_a_grain_spot_kept_by_mask_auto(predictor: Predictor, tmp_path: Path) -> None:
    """A few-crystal calcite (bright compact spots on its lines) and one anvil spot off every line:
    predict's ``--mask auto`` masks the anvil spot and keeps the grain spots; the auto mask of
    before (``keep_grains=False``) masked both."""
    frame, grains, anvil = grain_frame(str(tmp_path / "tiny.poni"))
    path = tmp_path / "frame.edf"
    fabio.edfimage.EdfImage(data=frame).write(str(path))
    options = ReadOptions(poni=tmp_path / "tiny.poni", mask="auto", keep_mask=True)
    ((_, pattern),) = read_path(str(path), options, predictor.grain_lines)
    mask = pattern.meta["mask_array"]
    assert mask[anvil].all() and mask[grains].mean() < 0.2
    old = ReadOptions(poni=tmp_path / "tiny.poni", mask="auto", keep_mask=True, keep_grains=False)
    ((_, pattern),) = read_path(str(path), old, predictor.grain_lines)
    assert pattern.meta["mask_array"][grains].mean() > 0.9
    (pred,) = predictor.predict_files(  # predict reads the same way (the saved mask shows it)
        [path],
        ReadOptions(poni=tmp_path / "tiny.poni", mask="auto"),
        1,
        False,
        save_mask=tmp_path / "m",
    )
    (saved_file,) = (tmp_path / "m").iterdir()
    saved = fabio.open(str(saved_file)).data != 0
    assert pred.ok and np.array_equal(saved, mask)
