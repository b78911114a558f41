"""Writing results: the predictions CSV (the fixed CSV contract of ``xrdmtl predict``), written atomically."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from ..atomic import write_text
from ..errors import OutputError


class CsvRow(Protocol):
    """A result that renders as one row of the predictions CSV (a :class:`~xrdmtl.inference.Prediction`)."""

    def row(self, phases: Sequence[str], cells: bool = ...) -> list[str]: ...


PROVENANCE_COLUMNS = ("wavelength", "wavelength_source", "x_unit")
CELL_FIELDS = ("a", "a_err", "c", "c_err")  # a phase's refined cell (Å), last in the CSV


def cell_columns(phases: Sequence[str]) -> list[str]:
    """The CSV columns of the refined cells: ``<phase>_a, <phase>_a_err, <phase>_c, <phase>_c_err``."""
    return [f"{p}_{f}" for p in phases for f in CELL_FIELDS]


def csv_header(phases: Sequence[str], cells: bool = False) -> list[str]:
    """Columns of the predictions CSV: the fixed contract ones, then what each pattern was read
    with (the wavelength in Å, its source: file, option, default or poni; the x unit, with
    ``(assumed)`` where the file names none), then, with ``cells`` (``--verify``), each phase's
    refined cell and its uncertainty (Å, empty where the phase is not called)."""
    return [
        "file",
        *(f"p_{p}" for p in phases),
        *phases,
        "warning",
        "error",
        *PROVENANCE_COLUMNS,
        *(cell_columns(phases) if cells else []),
    ]


def write_csv(
    predictions: Sequence[CsvRow],
    phases: Sequence[str],
    out: str | Path | None = None,
    cells: bool = False,
) -> str:
    """The predictions as CSV text (``cells``: with the refined-cell columns); written atomically
    to ``out`` (temp file + ``os.replace``) if given."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(csv_header(phases, cells))
    writer.writerows(p.row(phases, cells) for p in predictions)
    text = buf.getvalue()
    if out is not None:
        try:
            write_text(out, text, newline="")
        except OSError as exc:
            raise OutputError(f"cannot write --out {out}: {exc.strerror or exc}") from None
    return text


def _finite(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, ±inf) replaced by None, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def json_text(obj: Any, **kwargs: Any) -> str:
    """``obj`` as strict JSON (what ``json.dumps`` writes, ``kwargs`` passed on), with null where
    a value is not a finite number: never a bare ``NaN`` or ``Infinity``, which JSON does not have."""
    return json.dumps(_finite(obj), allow_nan=False, **kwargs)
