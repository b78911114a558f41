"""The predictions CSV: the fixed columns, any object with ``row``, written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from xrdmtl.io.writers import csv_header, write_csv


class _Row:
    def row(self, phases: Sequence[str], cells: bool = False) -> list[str]:
        return ["a.xy", *["0.5000"] * len(phases), *["1"] * len(phases), "", ""]


def test_header_and_rows(tmp_path: Path) -> None:
    header = csv_header(["calcite", "rhenium"])
    assert header[:7] == [
        "file",
        "p_calcite",
        "p_rhenium",
        "calcite",
        "rhenium",
        "warning",
        "error",
    ]
    text = write_csv([_Row()], ["calcite", "rhenium"], tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_text() == text
    assert text.splitlines()[1].startswith("a.xy,0.5000,0.5000,1,1")
