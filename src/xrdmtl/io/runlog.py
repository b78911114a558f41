"""The CSV of a watched run (``xrdmtl watch --out run.csv``): predict's CSV, grown one batch at a time.

:class:`RunLog` opens (or creates) the CSV, checks that an existing one has the same columns (a
restart resumes it), and appends complete rows: each batch is one ``write`` of whole lines on a file
opened for appending, then ``fsync``. A run killed in the middle of a write can leave a half line at
the end; the next :class:`RunLog` cuts it off (atomically: the file without it replaces the file)
before it appends, so a reader never meets a half row where the run goes on.

:func:`read_run` reads such a CSV (or any predictions CSV) for the timeline: the phases, their
probabilities per row, the warnings and errors, and refined cells where the CSV has them.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import write_bytes
from ..errors import OutputError, XrdmtlError

__all__ = ["RunLog", "RunTable", "cell_columns", "file_key", "number", "read_run"]


def file_key(label: str) -> str:
    """What identifies a row's input across restarts: the file's name, without a frame index
    (``run/frames/f_0003.edf`` and ``/abs/run/frames/f_0003.edf::0`` both give ``f_0003.edf``)."""
    return os.path.basename(label.partition("::")[0])


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


class RunLog:
    """The run's CSV at ``path`` with columns ``header``; remembers which files it already holds."""

    def __init__(self, path: str | Path, header: Sequence[str]) -> None:
        self.path = Path(path)
        self.header = list(header)
        self.done: set[str] = set()
        self.n_rows = 0
        try:
            self._open()
        except OSError as exc:
            raise OutputError(f"cannot write --out {self.path}: {exc.strerror or exc}") from None

    def _open(self) -> None:
        """Create the CSV with its header, or check and resume an existing one."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            write_bytes(self.path, self._encode([self.header]))
            return
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        try:
            rows = _rows(complete.decode("utf-8"))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise XrdmtlError(f"--out {self.path} is not a predictions CSV ({exc})") from None
        if not rows or rows[0] != self.header:
            raise XrdmtlError(self._other_columns(rows[0] if rows else []))
        if complete != data:  # a half line left by a run killed mid-write
            write_bytes(self.path, complete)
        self.done = {file_key(r[0]) for r in rows[1:] if r}
        self.n_rows = len(rows) - 1

    def _other_columns(self, found: list[str]) -> str:
        """Why an existing CSV with the columns ``found`` cannot be resumed, and what to do."""
        n = min(len(found), len(self.header))
        if found and found[:n] == self.header[:n]:  # the same run, with or without the cells
            flag = "--no-verify" if len(found) < len(self.header) else "--verify"
            return (
                f"--out {self.path} was written {'without' if flag == '--no-verify' else 'with'} "
                f"the refined-cell columns of the physics check: resume it with {flag}, or give a "
                "new --out"
            )
        shown = ", ".join(found[:6]) if found else "no header"
        return (
            f"--out {self.path} holds other columns ({shown}…) than this model's run: "
            "give a new --out, or the model it was written with"
        )

    def _encode(self, rows: Sequence[Sequence[str]]) -> bytes:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        return buf.getvalue().encode("utf-8")

    def append(self, rows: Sequence[Sequence[str]]) -> None:
        """Append whole rows: one write of complete lines, flushed to disk before it returns."""
        if not rows:
            return
        data = self._encode(rows)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise OutputError(
                f"cannot append to --out {self.path}: {exc.strerror or exc}"
            ) from None
        self.done.update(file_key(r[0]) for r in rows)
        self.n_rows += len(rows)


@dataclass
class RunTable:
    """A predictions CSV: its ``header`` and ``rows``, and as columns: ``phases`` in the CSV's
    order, per row the file, each phase's probability (None where the row has an error), the
    error, and ``cells``: for each ``<phase>_a``/``<phase>_c`` column the CSV holds, its values
    (None where empty)."""

    phases: list[str]
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)  # as read, each as long as the header
    files: list[str] = field(default_factory=list)
    probabilities: dict[str, list[float | None]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    cells: dict[str, list[float | None]] = field(default_factory=dict)


def number(text: str) -> float | None:
    """A CSV cell as a finite number; None where empty, not a number, NaN or infinite."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def cell_columns(header: Sequence[str], phases: Sequence[str]) -> list[str]:
    """The refined-cell columns ``<phase>_a``, ``<phase>_c`` among ``header``, in phase order."""
    return [f"{p}_{axis}" for p in phases for axis in ("a", "c") if f"{p}_{axis}" in header]


def read_run(path: str | Path) -> RunTable:
    """Read a run's (or predict's) CSV; one clear error if it is not one."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise XrdmtlError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise XrdmtlError(f"{path} is not a predictions CSV (not UTF-8 text)") from None
    rows = _rows(text[: text.rfind("\n") + 1] if "\n" in text else text)
    header = rows[0] if rows else []
    phases = [h[2:] for h in header if h.startswith("p_")]
    if not header or header[0] != "file" or not phases or "error" not in header:
        raise XrdmtlError(f"{path} is not a predictions CSV (file, p_<phase>…, …, error)")
    col = {name: i for i, name in enumerate(header)}
    table = RunTable(phases, header, probabilities={p: [] for p in phases})
    cells = cell_columns(header, phases)
    table.cells = {c: [] for c in cells}
    for row in rows[1:]:
        row = row + [""] * (len(header) - len(row))
        table.rows.append(row)
        table.files.append(row[0])
        table.errors.append(row[col["error"]])
        for p in phases:
            table.probabilities[p].append(number(row[col[f"p_{p}"]]))
        for c in cells:
            table.cells[c].append(number(row[col[c]]))
    return table
