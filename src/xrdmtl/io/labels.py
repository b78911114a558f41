"""Labeled patterns: a ``labels.csv`` (``file,<phase>,…``, 0/1) and the patterns it names.

:func:`read_labels` reads the table; :func:`load_labeled` also reads every pattern (1D files or
frames, with predict's reading options) onto a model's Q grid as :class:`LabeledPatterns`.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import LabelsError, XrdmtlError
from ..physics.grid import QGrid
from ..physics.pattern import Pattern
from .read import ReadOptions, checked_options, read_files


def _decode_labels(data: bytes, path: Path) -> str:
    """Labels text: UTF-8 (with or without a byte-order mark) or UTF-16 with its byte-order mark;
    anything else is a :class:`LabelsError` saying where the first bad byte is."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise LabelsError(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}): save the labels "
            "as UTF-8 CSV",
            path,
        ) from None


def read_labels(
    csv_path: str | Path, phases: Sequence[str], note: Callable[[str], None] | None = None
) -> tuple[list[str], np.ndarray]:
    """Read a labels CSV (``file,<phase>,…`` with 0/1 values, ``file`` relative to the CSV's folder).

    Returns the files (paths as strings, a ``::index`` frame suffix kept) and a uint8 array
    ``(n, len(phases))`` in the order of ``phases``. Columns of other phases are ignored, with a note
    passed to ``note``; a missing phase column, a bad value or an empty table is a :class:`LabelsError`.
    """
    path = Path(csv_path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LabelsError(f"cannot read labels: {exc.strerror or exc}", path) from None
    text = _decode_labels(data, path)
    try:
        rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    except csv.Error as exc:
        raise LabelsError(f"not a CSV table: {exc}", path) from None
    if not rows:
        raise LabelsError("empty labels file", path)
    header = [c.strip() for c in rows[0]]
    if not header or header[0].lower() != "file":
        raise LabelsError(f"first column must be 'file', got {header[0]!r}", path)
    missing = [p for p in phases if p not in header]
    if missing:
        raise LabelsError(
            f"no column for the model's phase(s) {', '.join(missing)} (columns: {', '.join(header)})",
            path,
        )
    extra = [c for c in header[1:] if c not in phases]
    if extra and note is not None:
        note(f"{path}: ignoring column(s) {', '.join(extra)} (not phases of the model)")
    _check_repeats(rows, header, path)
    cols = [header.index(p) for p in phases]
    files: list[str] = []
    labels = np.zeros((len(rows) - 1, len(phases)), dtype=np.uint8)
    for i, row in enumerate(rows[1:]):
        line = i + 2
        if len(row) < len(header):
            raise LabelsError(f"line {line} has {len(row)} fields, the header {len(header)}", path)
        name = row[0].strip()
        if not name:
            raise LabelsError(f"line {line} has no file name", path)
        for j, c in enumerate(cols):
            value = row[c].strip()
            if value not in ("0", "1"):
                raise LabelsError(f"line {line}, column {header[c]}: {value!r} is not 0 or 1", path)
            labels[i, j] = int(value)
        base, sep, frame = name.partition("::")
        full = Path(base) if Path(base).is_absolute() else path.parent / base
        files.append(f"{full}{sep}{frame}")
    if not files:
        raise LabelsError("no labeled rows", path)
    return files, labels


def _check_repeats(rows: list[list[str]], header: list[str], path: Path) -> None:
    """A :class:`LabelsError` naming the lines where one pattern (file, or frame of a stack) is
    listed twice, under any spelling of its path: with the same labels it would be counted twice
    (a leave-one-out then scores its copy), with others it is labeled two ways."""
    seen: dict[tuple[str, str], int] = {}
    repeats: list[tuple[int, int]] = []
    for i, row in enumerate(rows[1:]):
        base, _, frame = row[0].strip().partition("::")
        full = Path(base) if Path(base).is_absolute() else path.parent / base
        try:
            real = os.path.realpath(full)
        except (OSError, ValueError):  # a name no file system takes (a NUL): compare it as written
            real = os.path.normpath(full)
        key = (os.path.normcase(real), frame)
        if key in seen:
            repeats.append((seen[key], i + 1))
        else:
            seen[key] = i + 1
    if not repeats:
        return
    first, again = repeats[0]
    a, b = ([c.strip() for c in rows[k][1 : len(header)]] for k in (first, again))
    differ = [f"{h} {x} vs {y}" for h, x, y in zip(header[1:], a, b, strict=False) if x != y]
    how = f"with different labels ({', '.join(differ)})" if differ else "with the same labels"
    more = f" ({len(repeats) - 1} more repeated row(s) follow)" if len(repeats) > 1 else ""
    raise LabelsError(
        f"line {again + 1} ({rows[again][0].strip()}) is the pattern of line {first + 1} "
        f"({rows[first][0].strip()}) again, {how}{more}: list each pattern once",
        path,
    )


class LabeledPatterns(NamedTuple):
    """Labeled patterns already on the model's grid (any object with these fields works)."""

    intensity: np.ndarray  # (N, G)
    coverage: np.ndarray  # (N, G) bool
    labels: np.ndarray  # (N, T) 0/1 in the model's phase order


def load_labeled(
    csv_path: str | Path,
    phases: Sequence[str],
    grid: QGrid,
    options: ReadOptions | None = None,
    note: Callable[[str], None] | None = None,
) -> tuple[LabeledPatterns, list[str], list[str]]:
    """Read a labels CSV and its pattern files onto ``grid``.

    ``options``: predict's reading options (:class:`~xrdmtl.io.read.ReadOptions`: 1D files with a
    wavelength / x unit; detector frames, ``file`` or ``stack::index``, integrated with a geometry
    and mask). Returns the patterns, the files read and one line per file that could not be read
    (the others are still used). :class:`LabelsError` when no file can be read.
    """
    files, labels = read_labels(csv_path, phases, note)
    items = read_files(files, checked_options(options))
    return labeled_on_grid(files, items, labels, grid, csv_path)


def labeled_on_grid(
    files: Sequence[str],
    items: Sequence[Pattern | XrdmtlError],
    labels: np.ndarray,
    grid: QGrid,
    csv_path: str | Path,
) -> tuple[LabeledPatterns, list[str], list[str]]:
    """The labeled patterns ``items`` (one per file, read or not) on ``grid``, as :func:`load_labeled`
    returns them."""
    rows, used, failed = [], [], []
    for i, (f, item) in enumerate(zip(files, items, strict=True)):
        try:
            if isinstance(item, XrdmtlError):
                raise item
            rows.append((i, *item.on_grid(grid)))
            used.append(f)
        except XrdmtlError as exc:
            failed.append(str(exc) if f in str(exc) else f"{f}: {exc}")
    if not rows:
        raise LabelsError(
            f"none of the {len(files)} labeled files could be read"
            + (f" (first: {failed[0]})" if failed else ""),
            csv_path,
        )
    idx = [r[0] for r in rows]
    patterns = LabeledPatterns(
        np.stack([r[1] for r in rows]), np.stack([r[2] for r in rows]), labels[idx]
    )
    return patterns, used, failed
