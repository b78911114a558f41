"""Options that do nothing in the context they are given in say so: one ``note:`` line on stderr
each (and options that contradict each other are a usage error), so that no option is silently
ignored."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from ..errors import XrdmtlError

_err = Console(stderr=True)


def note(message: str) -> None:
    """One ``note:`` line on stderr."""
    _err.print(f"note: {message}", highlight=False, soft_wrap=True)


def unused(option: str, why: str) -> None:
    """Say that ``option`` does nothing here, and why."""
    note(f"{option} does nothing here: {why}")


def reading_notes(
    files: Sequence[str], poni: Path | None, mask: str, x_unit: str | None, what: str = "input"
) -> None:
    """Notes for reading options that no file of the run uses: ``--poni`` and ``--mask`` without a
    2D frame among ``files``, ``--x-unit`` where every file is a frame (integrated to 2θ)."""
    from ..io.read import is_frame

    if not files:
        return
    frames = sum(is_frame(f, poni is not None) for f in files)
    if frames == 0:
        if poni is not None:
            unused("--poni", f"no {what} is a 2D detector frame (the geometry integrates frames)")
        if mask != "none" and poni is not None:
            unused("--mask", f"no {what} is a 2D detector frame (masks apply to frames)")
    elif frames == len(files) and x_unit is not None:
        unused("--x-unit", f"every {what} is a 2D frame, integrated to 2θ with --poni")


def mask_without_geometry(poni: Path | None, mask: str) -> None:
    """``--mask`` without ``--poni``: no frame can be read, so no mask applies."""
    if poni is None and mask != "none":
        unused("--mask", "masks apply to 2D frames, which need --poni")


def contradict(first: str, second: str) -> None:
    """Two options given together that ask for opposite things: a usage error."""
    raise XrdmtlError(f"{first} and {second} contradict each other: give one of them")
