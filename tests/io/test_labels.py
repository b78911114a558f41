"""labels.csv: files relative to the CSV, phases in the asked order, other columns noted."""

from __future__ import annotations

from pathlib import Path

import pytest

from xrdmtl.errors import LabelsError
from xrdmtl.io.labels import read_labels


def test_reads_in_the_asked_order_and_notes_other_columns(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text(
        "file,rhenium,calcite,quartz\nsub/a.xy,1,0,1\nb.h5::3,0,1,0\n"
    )
    notes: list[str] = []
    files, labels = read_labels(tmp_path / "labels.csv", ["calcite", "rhenium"], notes.append)
    assert files == [str(tmp_path / "sub" / "a.xy"), f"{tmp_path / 'b.h5'}::3"]
    assert labels.tolist() == [[0, 1], [1, 0]]
    assert notes and "quartz" in notes[0]


def test_a_missing_phase_column_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("file,calcite\na.xy,1\n")
    with pytest.raises(LabelsError, match="rhenium"):
        read_labels(tmp_path / "labels.csv", ["calcite", "rhenium"])
