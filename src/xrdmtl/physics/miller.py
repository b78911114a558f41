"""Miller indices as a crystallographer writes them: one formatter for tables, plots and CSVs.

Three styles (hkl are 3-index for every lattice, hexagonal and trigonal included: the
Miller–Bravais i = −(h + k) is dropped):

- ``unicode`` (terminal tables, text): a negative index carries an overbar (the combining
  overline U+0305 on each digit), ``21̄6``; indices are written together while every one has a
  single digit and separated by spaces otherwise (``1 0 10``);
- ``tex`` (matplotlib labels): the same with mathtext overbars, ``$2\\bar{1}6$``;
- ``plain`` (CSV and any ASCII-only output): always space separated with a minus sign, ``2 -1 6``,
  so that ``2-16`` (readable as 2, −16) never appears.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

OVERLINE = "\u0305"
HklStyle = Literal["unicode", "tex", "plain"]


def format_hkl(hkl: Iterable[int], style: HklStyle = "unicode") -> str:
    """Miller indices ``hkl`` as text in ``style`` (see the module notes)."""
    values = [int(v) for v in hkl]
    if style == "plain":
        return " ".join(str(v) for v in values)
    sep = " " if any(abs(v) > 9 for v in values) else ""
    if style == "unicode":
        return sep.join("".join(c + OVERLINE for c in str(-v)) if v < 0 else str(v) for v in values)
    if style == "tex":
        return (
            "$"
            + ("\\ " if sep else "").join(f"\\bar{{{-v}}}" if v < 0 else str(v) for v in values)
            + "$"
        )
    raise ValueError(f"unknown hkl style {style!r} (unicode, tex or plain)")
