"""One reader for every command: any path (1D file, 2D frame, frame stack) into patterns.

:class:`ReadOptions` holds the reading options every command takes (``--wavelength``, ``--x-unit``,
``--poni``, ``--mask``). :func:`read_path` turns one path into ``(label, pattern or error)`` items
(one for a 1D file, one per frame of a frame file, integrated with the geometry), never raising for
a bad file; :func:`read_files` reads a list of labeled files (``file`` or ``stack::index``), each
frame file integrated once. ``predict``, ``evaluate``, ``audit``, ``train --labels``, ``finetune``
and ``crossval`` all read through these two.

Also here: :func:`is_frame` tells a 2D detector frame from a 1D pattern file, :func:`expand_inputs`
turns files, folders and globs into files, :func:`cached_integrator` and :func:`mask_arg` build one
pyFAI integrator per geometry file and one mask per mask file per process, :func:`frame_index`
splits a frame label ``stack.h5::17``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, FrameError, PatternError, XrdmtlError
from ..physics.pattern import Pattern
from ..physics.units import normalize_unit

if TYPE_CHECKING:
    from .frames import SpotLines

FRAME_EXTENSIONS = frozenset(
    {
        ".edf",
        ".tif",
        ".tiff",
        ".cbf",
        ".h5",
        ".hdf5",
        ".nxs",
        ".nx5",
        ".img",
        ".mccd",
        ".sfrm",
        ".mar3450",
        ".mar2300",
        ".gfrm",
        ".esperanto",
        ".fabio",
    }
)


@dataclass(frozen=True)
class ReadOptions:
    """How patterns are read, the same for every command.

    ``wavelength`` (Å) and ``x_unit`` are for 1D files (a file that states its own wavelength keeps
    it); ``poni`` (a pyFAI geometry file) makes 2D frames readable, integrated with ``mask``
    (``none``, ``auto`` or a mask file); ``keep_grains``: see :func:`read_path`.
    """

    wavelength: float | None = None
    x_unit: str | None = None
    poni: str | Path | None = None
    mask: str | Path = "none"
    keep_mask: bool = False  # frames with an auto mask keep it in meta["mask_array"] (--save-mask)
    # mask auto where a model checks the frame (predict, evaluate): spots on an evident phase's line
    # are kept (issue 29); False: every spot the auto mask finds is masked, the mask of before
    keep_grains: bool = True

    def __post_init__(self) -> None:
        """Check the options; paths become strings (picklable, hashable, comparable)."""
        object.__setattr__(self, "poni", None if self.poni is None else str(self.poni))
        object.__setattr__(self, "mask", str(self.mask))
        if self.wavelength is not None and not (
            np.isfinite(self.wavelength) and self.wavelength > 0
        ):
            raise ConfigError(f"wavelength must be positive (Å), got {self.wavelength}")
        if self.x_unit is not None:
            try:
                normalize_unit(self.x_unit)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if self.poni is not None and not Path(self.poni).is_file():
            raise FrameError("no such geometry file (--poni)", self.poni)
        if self.mask not in ("none", "auto") and not Path(self.mask).is_file():
            raise FrameError("--mask is neither none, auto nor an existing mask file", self.mask)


def checked_options(options: ReadOptions | None) -> ReadOptions:
    """``options``, or the defaults for None; anything else is a TypeError that says what to pass
    (the reading options were once separate keywords: ``wavelength=`` is now
    ``ReadOptions(wavelength=...)``)."""
    if options is None:
        return ReadOptions()
    if not isinstance(options, ReadOptions):
        raise TypeError(
            f"reading options must be a ReadOptions, e.g. ReadOptions(wavelength=0.561), "
            f"got {type(options).__name__} {options!r}"
        )
    return options


def read_path(
    path: str, options: ReadOptions, spot_lines: SpotLines | None = None
) -> Iterator[tuple[str, Pattern | XrdmtlError]]:
    """(label, pattern or error) for every pattern in ``path``: one for a 1D file, one per frame of a
    frame file (image formats, HDF5 stacks, a 2D ``.npy`` when there is a geometry). A file that
    cannot be read gives its error as the item, never an exception. With ``mask='auto'``,
    ``keep_grains`` and ``spot_lines`` (a model's check of the sample's lines), the auto mask spares
    the spots on those lines (:meth:`~xrdmtl.io.frames.Integrator.grain_mask`)."""
    poni = None if options.poni is None else str(options.poni)
    if is_frame(path, poni is not None):
        if poni is None:
            yield path, FrameError("a 2D detector frame needs its geometry: give --poni FILE", path)
            return
        from .frames import patterns_from_frames

        try:
            yield from patterns_from_frames(
                path,
                cached_integrator(poni, options.wavelength),
                mask_arg(str(options.mask)),
                keep_mask=options.keep_mask,
                spot_lines=spot_lines if options.keep_grains else None,
            )
        except XrdmtlError as exc:
            yield path, exc
        except Exception as exc:  # a reader library failing in an unforeseen way: report, go on
            yield path, FrameError(f"cannot read frames: {type(exc).__name__}: {exc}", path)
        return
    from .readers import load_pattern

    try:
        yield path, load_pattern(path, wavelength=options.wavelength, x_unit=options.x_unit)
    except XrdmtlError as exc:
        yield path, exc
    except Exception as exc:  # never let one file stop the batch
        yield path, PatternError(f"cannot read: {type(exc).__name__}: {exc}", path)


def read_files(files: Sequence[str], options: ReadOptions) -> list[Pattern | XrdmtlError]:
    """A pattern or an error per file of a list such as a labels CSV's: a 1D file, a single-frame
    file, or one frame ``stack.h5::17`` of a stack. Each frame file is integrated once."""
    frames: dict[str, list[tuple[str, Pattern | XrdmtlError]]] = {}
    out: list[Pattern | XrdmtlError] = []
    for file in files:
        base, sep, index = file.partition("::")
        if base not in frames:
            frames[base] = list(read_path(base, options))
        items = frames[base]
        if not sep:  # a 1D file, or a frame file's first frame
            out.append(items[0][1])
            continue
        found = [
            item
            for label, item in items
            if label == file
            or label.rpartition("::")[2] == index
            or (label == base and isinstance(item, XrdmtlError))
        ]  # the whole file failed
        out.append(found[0] if found else PatternError(f"no frame {index!r} in the file", file))
    return out


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


_INTEGRATORS: dict[tuple[str, float | None], Any] = {}


def cached_integrator(poni: str, wavelength: float | None = None) -> Any:
    """One integrator per geometry file (and ``--wavelength``, used where the geometry states
    none) per process, built on first use."""
    key = (poni, wavelength)
    if key not in _INTEGRATORS:
        from .frames import Integrator

        _INTEGRATORS[key] = Integrator(poni, wavelength=wavelength)
    return _INTEGRATORS[key]


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


def expand_inputs(
    paths: Sequence[str | Path], frames_too: bool
) -> tuple[list[str], list[tuple[str, XrdmtlError]]]:
    """Files, folders and globs → files (in argument order) and the arguments that matched nothing."""
    from .readers import PATTERN_EXTENSIONS, collect_inputs

    exts = PATTERN_EXTENSIONS | FRAME_EXTENSIONS if frames_too else PATTERN_EXTENSIONS
    files, unmatched = collect_inputs(list(paths), extensions=exts)
    bad: list[tuple[str, XrdmtlError]] = list(unmatched)
    if not frames_too:  # frames alone, without their geometry: say what is missing
        bad = [
            (
                label,
                FrameError(
                    "holds 2D detector frames but no 1D pattern: give their geometry with "
                    "--poni FILE",
                    label,
                )
                if collect_inputs([label], extensions=FRAME_EXTENSIONS)[0]
                else err,
            )
            for label, err in bad
        ]
    return [str(f) for f in files], [(label, err) for label, err in bad]


def frame_index(label: str) -> tuple[str, int] | None:
    """(stack, index) of a frame label ``stack.h5::17``, else None."""
    base, sep, index = label.rpartition("::")
    if not sep or not index.isdigit():
        return None
    return base, int(index)
