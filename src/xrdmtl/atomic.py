"""Atomic file writes: write a temporary file beside the target, then ``os.replace`` it into place.

A reader never sees a half-written file, and a failed write leaves the old file (if any) as it was
and no temporary file behind. The final file is readable like a normal file (mode ``0o644``;
``tempfile.mkstemp`` alone would leave it ``0o600``).

What is never replaced: a symbolic link (its target is written), and a target that exists but is not
a regular file (``/dev/stdout``, a FIFO, a device): the finished bytes are written into it. With
``overwrite=False`` an existing file is left alone and :class:`FileExistsError` raised.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["FILE_MODE", "atomic_path", "write_bytes", "write_text"]

FILE_MODE = 0o644


def _special(path: Path) -> bool:
    """``path`` exists and is neither a regular file nor a folder (a device, FIFO or socket)."""
    return path.exists() and not path.is_file() and not path.is_dir()


@contextmanager
def atomic_path(
    path: str | Path, suffix: str = ".tmp", *, overwrite: bool = True
) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder (created if needed) to write the new file to.

    The temporary file exists (empty) when yielded; writers that refuse to overwrite may delete it
    first. When the block ends normally the file gets mode ``0o644`` and replaces ``path``; on any
    exception it is removed and the exception propagates. ``suffix`` ends the temporary name: pass
    the target's own (``path.suffix``) for writers that pick the format from the extension.
    A symbolic link is followed; a device or FIFO gets the bytes written into it; ``overwrite=False``
    raises :class:`FileExistsError` rather than replace an existing file (checked atomically).
    """
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    if path.is_dir():
        raise IsADirectoryError(21, "Is a directory", str(path))
    special = _special(path)
    if not special:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        dir=None if special else path.parent, prefix=f".{path.name}.", suffix=suffix
    )
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if special:
            with open(tmp, "rb") as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst)
            tmp.unlink()
            return
        os.chmod(tmp, FILE_MODE)
        if overwrite:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)  # fails if path exists: no race between the check and the write
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links
            if path.exists():
                raise FileExistsError(17, "File exists", str(path)) from None
            os.replace(tmp, path)
        else:
            tmp.unlink()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes, *, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def write_text(
    path: str | Path,
    text: str,
    *,
    encoding: str = "utf-8",
    newline: str | None = None,
    overwrite: bool = True,
) -> None:
    """Write ``text`` to ``path`` atomically; ``newline`` as for :func:`open` (``""`` for CSV text
    whose line endings are already final)."""
    with (
        atomic_path(path, overwrite=overwrite) as tmp,
        open(tmp, "w", encoding=encoding, newline=newline) as fh,
    ):
        fh.write(text)
