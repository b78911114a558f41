"""Atomic file writes: write a temporary file beside the target, then ``os.replace`` it into place.

A reader never sees a half-written file, and a failed write leaves the old file (if any) as it was
and no temporary file behind. The final file is readable like a normal file (mode ``0o644``;
``tempfile.mkstemp`` alone would leave it ``0o600``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["FILE_MODE", "atomic_path", "write_bytes", "write_text"]

FILE_MODE = 0o644


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder (created if needed) to write the new file to.

    The temporary file exists (empty) when yielded; writers that refuse to overwrite may delete it
    first. When the block ends normally the file gets mode ``0o644`` and replaces ``path``; on any
    exception it is removed and the exception propagates. ``suffix`` ends the temporary name: pass
    the target's own (``path.suffix``) for writers that pick the format from the extension.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def write_text(path: str | Path, text: str, *, encoding: str = "utf-8", newline: str | None = None) -> None:
    """Write ``text`` to ``path`` atomically; ``newline`` as for :func:`open` (``""`` for CSV text
    whose line endings are already final)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding=encoding, newline=newline) as fh:
        fh.write(text)
