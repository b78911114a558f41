"""Writing results: the predictions CSV (the fixed CSV contract of ``xrdmtl predict``), written atomically."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from ..atomic import write_text
from ..errors import OutputError


class CsvRow(Protocol):
    """A result that renders as one row of the predictions CSV (a :class:`~xrdmtl.inference.Prediction`)."""

    def row(self, phases: Sequence[str]) -> list[str]: ...


PROVENANCE_COLUMNS = ("wavelength", "wavelength_source", "x_unit")
CELL_FIELDS = ("a", "a_err", "c", "c_err")  # a phase's refined cell (Å), last in the CSV


def cell_columns(phases: Sequence[str]) -> list[str]:
    """The CSV columns of the refined cells: ``<phase>_a, <phase>_a_err, <phase>_c, <phase>_c_err``."""
    return [f"{p}_{f}" for p in phases for f in CELL_FIELDS]


def csv_header(phases: Sequence[str]) -> list[str]:
    """Columns of the predictions CSV: the fixed contract ones, then what each pattern was read
    with (the wavelength in Å, its source: file, option, default or poni; the x unit, with
    ``(assumed)`` where the file names none), then each phase's refined cell and its uncertainty
    (Å, empty where the phase is not called or not verified)."""
    return [
        "file",
        *(f"p_{p}" for p in phases),
        *phases,
        "warning",
        "error",
        *PROVENANCE_COLUMNS,
        *cell_columns(phases),
    ]


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


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _nearest_existing(folder: Path) -> Path:
    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def _probe_folder(folder: Path, option: str, shown: str | Path) -> None:
    """Raise :class:`OutputError` unless a file can be created in ``folder`` (or, where it does not
    exist yet, unless it can be made): tried for real, so read-only mounts are caught too."""
    base = _nearest_existing(folder)
    if not base.is_dir():
        raise OutputError(f"cannot write {option} {shown}: {base} is a file, not a folder")
    try:
        if base == Path(os.path.abspath(folder)):
            fd, name = tempfile.mkstemp(dir=base, prefix=".xrdmtl-probe-")
            os.close(fd)
            os.unlink(name)
        else:
            os.rmdir(tempfile.mkdtemp(dir=base, prefix=".xrdmtl-probe-"))
    except OSError as exc:
        raise OutputError(f"cannot write {option} {shown}: {exc.strerror or exc}") from None


def check_output_file(
    path: str | Path,
    option: str,
    inputs: Iterable[str | Path] = (),
    labels: str | Path | None = None,
) -> None:
    """Refuse, before any work and with one line, an output file that would replace an input or the
    labels (any spelling of it, a link to it), that is a folder, or whose folder cannot be written.
    A device or FIFO (``/dev/stdout``) is fine: it is written into, never replaced."""
    p = Path(path)
    if p.is_dir():
        raise OutputError(
            f"{option} {path} is a folder: give a file name, e.g. {p / 'predictions.csv'}"
        )
    if p.exists():
        if labels is not None and _same_file(p, Path(labels)):
            raise OutputError(
                f"{option} {path} is the labels file {labels}: writing it would destroy the "
                "labels; choose another file"
            )
        for item in inputs:
            if _same_file(p, Path(item)):
                raise OutputError(
                    f"{option} {path} is one of the inputs ({item}): writing it would destroy "
                    "it; choose another file"
                )
        if not p.is_file():
            return
    _probe_folder(p.parent, option, path)


def check_output_folder(path: str | Path, option: str) -> None:
    """Refuse, before any work and with one line, an output folder that is a file or cannot be written."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputError(f"{option} {path} is not a folder (a file of that name is in the way)")
    _probe_folder(p, option, path)
