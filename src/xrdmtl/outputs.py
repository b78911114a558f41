"""One output rule for every command: nothing the user did not ask to lose is lost.

- An input (a pattern, the labels, the model, the geometry, the mask) is never an output, whatever
  the spelling (relative path, ``./``, a link): refused always.
- An output file that exists is replaced only when it is what the command itself writes (its
  content is recognised: ``ours``), or with ``--force``.
- An output folder is written whole into a hidden sibling (:func:`staged_folder`) and swapped in at
  the end, so it never mixes an old run with a new one, and a failed or interrupted run leaves the
  old folder as it was. An existing folder is replaced only when xrdmtl wrote it (a marker file,
  :data:`MARKER`, lists its files with their sizes and times: a file added or changed since makes
  it the user's) or its content is recognised (``ours``); a ``precious`` one (a model) only with
  ``--force``. A folder holding anything else is refused, with or without ``--force``.
- An output that cannot be written (a file where a folder is needed, a read-only place) is one
  line, before any work.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from .atomic import write_text
from .errors import OutputError

__all__ = [
    "MARKER",
    "check_apart",
    "check_file",
    "check_folder",
    "csv_starts_with",
    "marked",
    "staged_folder",
]

MARKER = ".xrdmtl-output.json"

Recognise = Callable[[Path], bool]


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _inside(item: Path, folder: Path) -> bool:
    """``item`` is ``folder`` or lies below it (any spelling of either)."""
    real, top = os.path.realpath(item), os.path.realpath(folder)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def _nearest_existing(folder: Path) -> Path:
    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def probe_folder(folder: str | Path, option: str, shown: str | Path) -> None:
    """Raise :class:`OutputError` unless a file can be created in ``folder`` (or, where it does not
    exist yet, unless it can be made): tried for real, so read-only mounts are caught too."""
    folder = Path(folder)
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


Input = str | Path | tuple[str, str | Path]  # a path, or (what it is, e.g. "--model", path)


def _refuse_inputs(path: Path, option: str, inputs: Iterable[Input], folder: bool) -> None:
    for given in inputs:
        what, item = given if isinstance(given, tuple) else ("", given)
        hit = _inside(Path(item), path) if folder else _same(path, Path(item))
        if hit:
            shown = f"{what} {item}".strip()
            raise OutputError(
                f"{option} {path} {'holds' if folder else 'is'} an input of this run ({shown}): "
                "writing it would destroy it; choose another " + ("folder" if folder else "file")
            )


def check_file(
    path: str | Path,
    option: str,
    *,
    inputs: Iterable[Input] = (),
    ours: Recognise | None = None,
    force: bool = False,
) -> None:
    """Refuse, before any work and with one line, an output file that is an input (always), that
    exists and is not what this command writes (``ours``) unless ``force``, that is a folder, or
    whose folder cannot be written. A device or FIFO (``/dev/stdout``) is written into, never
    replaced: it is fine."""
    p = Path(path)
    if p.is_dir():
        raise OutputError(
            f"{option} {path} is a folder: give a file name, e.g. {p / 'predictions.csv'}"
        )
    if p.exists():
        _refuse_inputs(p, option, inputs, folder=False)
        if not p.is_file():
            return
        if not force and not (ours is not None and ours(p)):
            raise OutputError(
                f"{option} {path} exists and is not a file this command wrote: choose another "
                "name, or add --force to replace it"
            )
    probe_folder(p.parent, option, path)


def check_folder(
    path: str | Path,
    option: str,
    *,
    inputs: Iterable[Input] = (),
    ours: Recognise | None = None,
    precious: bool = False,
    force: bool = False,
    alongside: bool = False,
) -> bool:
    """Refuse, before any work and with one line, an output folder this command may not write.

    Fine: a folder that does not exist or is empty; one this command wrote (``ours``), unless it is
    ``precious`` (a model: then only with ``force``); with ``alongside`` (the command writes new
    files beside the others and never replaces one) any folder. Refused always: a file in the way,
    an unwritable place; unless ``alongside``, a folder holding an input or the user's own files.
    Returns whether the folder exists and holds something (it will be replaced)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputError(f"{option} {path} is not a folder (a file of that name is in the way)")
    probe_folder(p, option, path)
    filled = p.is_dir() and any(p.iterdir())
    if alongside:
        return filled
    _refuse_inputs(p, option, inputs, folder=True)
    if not filled:
        return False
    if ours is not None and ours(p):
        if precious and not force:
            raise OutputError(
                f"{option} {path} already holds a model (or a training checkpoint): choose a new "
                "folder, or add --force to replace it (the whole folder)"
            )
        return True
    names = _unrecorded(p)
    shown = ", ".join(names[:3]) + (" …" if len(names) > 3 else "")
    raise OutputError(
        f"{option} {path} holds files xrdmtl did not write for this command or that changed "
        f"since ({shown}): choose "
        "a new or empty folder (--force replaces only a folder xrdmtl wrote)"
    )


HASHED = 1 << 16  # bytes: files up to this size (labels, tables, geometry) are recorded by content


def check_apart(
    option: str, folder: str | Path | None, others: Mapping[str, str | Path | None]
) -> None:
    """Refuse, with one line, an output of the run that is or lies inside (or around) the output
    ``folder`` written whole (it would be removed when the folder is swapped in, or left in it as a
    file xrdmtl did not write there)."""
    if folder is None:
        return
    for other, path in others.items():
        if path is not None and (
            _inside(Path(path), Path(folder)) or _inside(Path(folder), Path(path))
        ):
            raise OutputError(
                f"{option} {folder} and {other} {path} overlap: give them separate places"
            )


def _inventory(folder: Path) -> dict[str, list[int | str]]:
    """Every file below ``folder`` (the marker aside): relative path → [size, mtime in ns], and the
    SHA-256 of small files (an edit within the clock's tick keeps the time; a label flip, the size)."""
    out: dict[str, list[int | str]] = {}
    for root, _, files in os.walk(folder):
        for name in files:
            f = Path(root) / name
            rel = f.relative_to(folder).as_posix()
            if rel != MARKER:
                st = f.lstat()
                out[rel] = [st.st_size, st.st_mtime_ns]
                if st.st_size <= HASHED and f.is_file():
                    out[rel].append(hashlib.sha256(f.read_bytes()).hexdigest())
    return out


def _recorded(folder: Path) -> tuple[str | None, dict]:
    """The kind and the files the marker of ``folder`` records (None and {} without one)."""
    try:
        doc = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, {}
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), dict):
        return None, {}
    return doc.get("xrdmtl"), doc["files"]


def _unrecorded(folder: Path) -> list[str]:
    """The files of ``folder`` its marker does not record as they are now (all without a marker)."""
    _, files = _recorded(folder)
    return sorted(k for k, v in _inventory(folder).items() if files.get(k) != v)


def mark(folder: Path, kind: str) -> None:
    """Record in ``folder`` that xrdmtl wrote it (as ``kind``) and which files it holds."""
    doc = {"xrdmtl": kind, "files": _inventory(folder)}
    write_text(folder / MARKER, json.dumps(doc, indent=0) + "\n")


def marked(*kinds: str) -> Recognise:
    """A recogniser: the folder's marker names one of ``kinds`` and every file in it is one xrdmtl
    wrote there, unchanged since (same size and time)."""

    def recognise(folder: Path) -> bool:
        kind, _ = _recorded(folder)
        return kind in kinds and not _unrecorded(folder)

    return recognise


def csv_starts_with(*prefixes: str) -> Recognise:
    """A recogniser of a CSV file whose first line starts with one of ``prefixes``."""

    def recognise(path: Path) -> bool:
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                head = fh.readline(4096)
        except OSError:
            return False
        return head.lstrip("\ufeff").startswith(prefixes)

    return recognise


@contextmanager
def staged_folder(
    path: str | Path, kind: str, on_interrupt: Callable[[Path], None] | None = None
) -> Iterator[Path]:
    """Yield a new empty hidden folder beside ``path`` to write the whole output into. When the
    block ends normally it is marked (:func:`mark`) and swapped in for ``path`` (an old folder there
    is removed); on any exception it is removed and ``path`` is left as it was. On Ctrl-C,
    ``on_interrupt`` may first save what is worth keeping of the unfinished folder."""
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.xrdmtl-new-"))
    try:
        yield stage
        mark(stage, kind)
        os.chmod(stage, 0o755)
        swap_in(stage, target)
    except BaseException as exc:
        try:
            if isinstance(exc, KeyboardInterrupt) and on_interrupt is not None:
                on_interrupt(stage)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        raise


def swap_in(stage: Path, target: Path) -> None:
    """Put the folder ``stage`` at ``target``; an old folder there is moved aside, then removed."""
    if not target.exists():
        os.replace(stage, target)
        return
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.xrdmtl-old-"))
    os.replace(target, old / target.name)
    try:
        os.replace(stage, target)
    except BaseException:
        os.replace(old / target.name, target)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
