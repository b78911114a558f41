"""Where patterns come from: frame or 1D file, and per-process caches of geometries and masks.

:func:`is_frame` tells a 2D detector frame from a 1D pattern file, :func:`expand_inputs` turns files,
folders and globs into files, :func:`cached_integrator` and :func:`mask_arg` build one pyFAI
integrator per geometry file and one mask per mask file per process, :func:`frame_index` splits a
frame label ``stack.h5::17``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FrameError, XrdmtlError

FRAME_EXTENSIONS = frozenset(
    {".edf", ".tif", ".tiff", ".cbf", ".h5", ".hdf5", ".nxs", ".nx5", ".img", ".mccd", ".sfrm",
     ".mar3450", ".mar2300", ".gfrm", ".esperanto", ".fabio"}
)


def mask_arg(mask: str) -> Any:
    """The ``mask`` argument for frames: 'none' and 'auto' stay, a file → its bool mask array."""
    if mask in ("none", "auto"):
        return mask
    from .frames import load_mask

    return _cached_mask(mask, load_mask)


_MASKS: dict[str, Any] = {}


def _cached_mask(path: str, loader: Callable[[str], Any]) -> Any:
    if path not in _MASKS:
        _MASKS[path] = loader(path)
    return _MASKS[path]


_INTEGRATORS: dict[str, Any] = {}


def cached_integrator(poni: str) -> Any:
    """One integrator per geometry file per process, built on first use."""
    if poni not in _INTEGRATORS:
        from .frames import Integrator

        _INTEGRATORS[poni] = Integrator(poni)
    return _INTEGRATORS[poni]


def is_frame(path: str, have_geometry: bool) -> bool:
    """A 2D frame file: an image format, or (with a geometry) a 2D ``.npy`` that is not 2×N / N×2."""
    suffix = Path(path.partition("::")[0]).suffix.lower()
    if suffix in FRAME_EXTENSIONS:
        return True
    if suffix == ".npy" and have_geometry:
        fmt = np.lib.format
        try:
            with open(path, "rb") as fh:
                version = fmt.read_magic(fh)
                read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                shape = read(fh)[0]
        except (OSError, ValueError):
            return False
        return len(shape) == 2 and min(shape) > 3
    return False


def expand_inputs(paths: Sequence[str | Path], frames_too: bool) -> tuple[list[str], list[tuple[str, XrdmtlError]]]:
    """Files, folders and globs → files (in argument order) and the arguments that matched nothing."""
    from .readers import PATTERN_EXTENSIONS, collect_inputs

    exts = PATTERN_EXTENSIONS | FRAME_EXTENSIONS if frames_too else PATTERN_EXTENSIONS
    files, bad = collect_inputs(list(paths), extensions=exts)
    if not frames_too:  # frames alone, without their geometry: say what is missing
        bad = [(label, FrameError("holds 2D detector frames but no 1D pattern: give their geometry with "
                                  "--poni FILE", label)
                if collect_inputs([label], extensions=FRAME_EXTENSIONS)[0] else err)
               for label, err in bad]
    return [str(f) for f in files], [(label, err) for label, err in bad]


def frame_index(label: str) -> tuple[str, int] | None:
    """(stack, index) of a frame label ``stack.h5::17``, else None."""
    base, sep, index = label.rpartition("::")
    if not sep or not index.isdigit():
        return None
    return base, int(index)
