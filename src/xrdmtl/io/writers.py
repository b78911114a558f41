"""Writing results: the predictions CSV (DESIGN.md contract), written atomically."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from ..atomic import write_text


class CsvRow(Protocol):
    """A result that renders as one row of the predictions CSV (a :class:`~xrdmtl.inference.Prediction`)."""

    def row(self, phases: Sequence[str]) -> list[str]: ...


def csv_header(phases: Sequence[str]) -> list[str]:
    """Columns of the predictions CSV (DESIGN.md contract)."""
    return ["file", *(f"p_{p}" for p in phases), *phases, "warning", "error"]


def write_csv(predictions: Sequence[CsvRow], phases: Sequence[str], out: str | Path | None = None) -> str:
    """The predictions as CSV text; written atomically to ``out`` (temp file + ``os.replace``) if given."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(csv_header(phases))
    writer.writerows(p.row(phases) for p in predictions)
    text = buf.getvalue()
    if out is not None:
        write_text(out, text, newline="")
    return text
