"""The unit a file states wins over --x-unit, with a note, as its stated wavelength does."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from xrdmtl.io.readers import load_pattern
from xrdmtl.physics.units import normalize_unit

HEADERS = {"2th_deg": "2th_deg", "q_A^-1": "q_A^-1", "q_nm^-1": "q_nm^-1", "d_A": "d (Å)"}
OPTIONS = [None, "2th_deg", "q_A^-1", "q_nm^-1", "d_A", "q", "2theta"]


def _write(folder: Path, header: str) -> Path:
    x = np.linspace(1.0, 4.0, 200)
    y = 10 + np.exp(-0.5 * ((x - 2.0) / 0.02) ** 2)
    path = folder / "p.xy"
    lines = ["# wavelength: 0.561 A", f"# {header}  I"] + [
        f"{a:.5f} {b:.5f}" for a, b in zip(x, y, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@settings(max_examples=40, deadline=None)
@given(stated=st.sampled_from(sorted(HEADERS)), option=st.sampled_from(OPTIONS))
def test_the_stated_unit_wins(stated: str, option: str | None) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = load_pattern(_write(Path(d), HEADERS[stated]), x_unit=option)
    assert p.unit == stated
    given = None if option is None else normalize_unit(option)
    if given in (None, stated):
        assert "x_unit_note" not in p.meta
    else:
        assert p.meta["x_unit_note"] == (
            f"the file states x in {stated}, used instead of --x-unit {given}"
        )


def test_the_option_still_names_the_unit_of_a_file_that_states_none(tmp_path: Path) -> None:
    x = np.linspace(1.0, 4.0, 200)
    np.save(tmp_path / "q.npy", np.stack([x, 10 + np.sin(x)]))
    p = load_pattern(tmp_path / "q.npy", x_unit="q")
    assert p.unit == "q_A^-1" and "x_unit_note" not in p.meta
