"""Writing results: the predictions CSV (the fixed CSV contract of ``xrdmtl predict``), written atomically."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from ..atomic import write_text
from ..errors import OutputError


class CsvRow(Protocol):
    """A result that renders as one row of the predictions CSV (a :class:`~xrdmtl.inference.Prediction`)."""

    def row(self, phases: Sequence[str]) -> list[str]: ...


PROVENANCE_COLUMNS = ("wavelength", "wavelength_source", "x_unit")


def csv_header(phases: Sequence[str]) -> list[str]:
    """Columns of the predictions CSV: the fixed contract ones, then what each pattern was read
    with (the wavelength in Å, its source: file, option, default or poni; the x unit, with
    ``(assumed)`` where the file names none)."""
    return ["file", *(f"p_{p}" for p in phases), *phases, "warning", "error", *PROVENANCE_COLUMNS]


def write_csv(
    predictions: Sequence[CsvRow], phases: Sequence[str], out: str | Path | None = None
) -> str:
    """The predictions as CSV text; written atomically to ``out`` (temp file + ``os.replace``) if given."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(csv_header(phases))
    writer.writerows(p.row(phases) for p in predictions)
    text = buf.getvalue()
    if out is not None:
        try:
            write_text(out, text, newline="")
        except OSError as exc:
            raise OutputError(f"cannot write --out {out}: {exc.strerror or exc}") from None
    return text
