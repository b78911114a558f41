"""File names cut to a column's width without losing what tells them apart.

:func:`distinct_clips` keeps the end of each name where the ends differ (frame numbers, run
indices), and otherwise elides the middle at the place that keeps every shown name distinct, so
``hdac_masked_xy_bc_10.npy`` and ``hdac_unmasked_xy_bc_10.npy`` never both read ``…sked_xy_bc_10.npy``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

ELLIPSIS = "…"


def _elide(name: str, n: int, head: int) -> str:
    """``name`` in ``n`` characters: its first ``head``, an ellipsis, then its end."""
    if len(name) <= n:
        return name
    tail = n - head - 1
    return name[:head] + ELLIPSIS + (name[len(name) - tail :] if tail > 0 else "")


def _window(name: str, n: int, start: int) -> str:
    """``name`` in ``n`` characters around ``start`` (where names begin to differ)."""
    if len(name) <= n:
        return name
    s = max(0, min(start - 3, len(name) - n + 1))
    body = name[s : s + n - (s > 0) - (s + n < len(name))]
    return (ELLIPSIS if s > 0 else "") + body + (ELLIPSIS if s + len(body) < len(name) else "")


def distinct_clips(names: Sequence[str], n: int) -> list[str]:
    """Each of ``names`` in at most ``n`` characters (``n`` ≥ 8), distinct wherever the names are.
    Where some do not fit, the folder they all share is dropped, then each keeps its end alone if
    that tells them apart, else its start and end around an elided middle, else the part where
    they begin to differ."""
    if all(len(s) <= n for s in names):
        return list(names)
    common = os.path.commonprefix(list(names))
    folder = max(common.rfind("/"), common.rfind(os.sep)) + 1
    if len(names) > 1 and folder:
        names = [s[folder:] for s in names]
    unique = len(set(names))
    differ = len(common) - folder + 3  # just past where the names begin to differ
    for head in (0, min(differ, n - 2), n // 3, n // 2, (2 * n) // 3, n - 2):
        shown = [_elide(s, n, head) for s in names]
        if len(set(shown)) == unique:
            return shown
    return [_window(s, n, differ - 3) for s in names]
