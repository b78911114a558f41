"""Detector frames in: reading (fabio, HDF5/NeXus/Eiger), pyFAI integration, anvil-spot masking.

:func:`read_frames` yields ``(label, image)`` for any file fabio reads (one label per frame of a
multi-frame file, ``path::index``) and for HDF5 image stacks (Eiger master files included: their
compressed data need ``hdf5plugin``). :class:`Integrator` builds pyFAI's CSR engine once per geometry
and reuses it; per-frame masks are applied as dummy values so that the engine is never rebuilt.
:func:`~xrdmtl.io.masking.auto_mask` finds single-crystal diamond spots and hot pixels;
:func:`patterns_from_frames` turns a frame file into 1D patterns, yielding errors per frame so that a
batch goes on (with ``spot_lines``, the auto mask spares the spots on the sample's lines).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..atomic import atomic_path
from ..errors import FrameError
from ..physics.pattern import Pattern
from .masking import MaskGeometry, Spots, find_spots, on_lines

# the sample's lines in a frame's pattern: 2θ centres and half widths (degrees) of the lines whose
# spots are sample signal, not anvil spots (the inference layer supplies it: it knows the phases)
SpotLines = Callable[[Pattern], tuple[np.ndarray, np.ndarray]]
DUMMY = np.float32(-1e30)  # value of excluded pixels handed to pyFAI (``dummy``)
DELTA_DUMMY = 1e28
METHOD = ("no", "csr", "cython")  # no pixel splitting: a pure sparse matrix-vector product


def read_frames(path: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """Frames of an image file as ``(label, 2D array)``: the path for a single frame,
    ``path::index`` for each frame of a stack (multi-frame EDF/TIFF/CBF, HDF5/NeXus, Eiger)."""
    path = Path(path)
    if not path.is_file():
        raise FrameError("no such file", path)
    import h5py

    if h5py.is_hdf5(path):
        yield from _read_hdf5(path)
        return
    import fabio

    with library_log("fabio") as log:
        try:
            img = fabio.open(str(path))
        except Exception as exc:  # fabio raises many types on unreadable files
            raise FrameError(f"cannot read image: {_why(exc)}", path) from exc
    failed = _failure(log)
    with img:
        n = int(img.nframes)
        for i in range(n):
            label = str(path) if n == 1 else f"{path}::{i}"
            with library_log("fabio") as log:
                try:
                    data = img.data if i == 0 else img.getframe(i).data
                except Exception as exc:
                    raise FrameError(f"cannot read frame {i}: {_why(exc)}", label) from exc
            failed = failed or _failure(log)
            if failed:  # fabio logs a short file and pads it with zeros: never use such a frame
                raise FrameError(f"truncated or damaged image: {failed}", label)
            yield label, _check_image(data, label)


@contextmanager
def library_log(*names: str) -> Iterator[list[logging.LogRecord]]:
    """Collect (and keep off the terminal) what the loggers ``names`` (fabio, pyFAI) report at
    warning level and above inside the block; the records are in the yielded list."""
    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = _Keep(logging.WARNING)
    loggers = [logging.getLogger(n) for n in names]
    saved = [lg.propagate for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.propagate = False
    try:
        yield records
    finally:
        for lg, prop in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.propagate = prop


def _failure(records: list[logging.LogRecord]) -> str:
    """The first error a library logged (one line), or ""."""
    for r in records:
        if r.levelno >= logging.ERROR:
            return " ".join(r.getMessage().split())[:200]
    return ""


def _read_hdf5(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """Frames of every image dataset of an HDF5 file, numbered across datasets."""
    import h5py
    import hdf5plugin  # noqa: F401  (registers the Eiger compression filters)

    try:
        with h5py.File(path, "r") as f:
            datasets = _image_datasets(f)
            if not datasets:
                raise FrameError("no 2D or 3D image dataset in this HDF5 file", path)
            index = 0
            for ds in datasets:
                if ds.ndim == 2:
                    yield str(path), _check_image(ds[()], str(path))
                    continue
                for i in range(ds.shape[0]):
                    label = f"{path}::{index}"
                    try:
                        data = ds[i]
                    except Exception as exc:  # truncated chunk, missing filter, broken link
                        raise FrameError(f"cannot read frame: {_why(exc)}", label) from exc
                    yield label, _check_image(data, label)
                    index += 1
    except OSError as exc:
        raise FrameError(f"cannot read HDF5 file: {_why(exc)}", path) from exc


def _image_datasets(f: Any) -> list[Any]:
    """The image datasets of an open HDF5 file: those of ``entry/data`` (NeXus, Eiger master with
    ``data_000001``… links) in name order, else the NXdata signal, else the first 3D (or 2D) dataset."""
    import h5py

    def images(items: list[Any]) -> list[Any]:
        return [d for d in items if isinstance(d, h5py.Dataset) and d.ndim in (2, 3) and d.size]

    for name in ("entry/data", "entry_0000/measurement"):
        if name in f and isinstance(f[name], h5py.Group):
            group = f[name]
            listed = images([group.get(k) for k in sorted(group) if k in group])  # skips dead links
            if listed:
                return listed
    found: list[Any] = []

    def visit(_: str, obj: Any) -> None:
        if isinstance(obj, h5py.Group) and obj.attrs.get("NX_class") in (b"NXdata", "NXdata"):
            signal = obj.attrs.get("signal")
            if isinstance(signal, bytes):
                signal = signal.decode()
            if signal in obj:
                found.extend(images([obj[signal]]))
        elif isinstance(obj, h5py.Dataset):
            found.extend(images([obj]))

    f.visititems(visit)
    found.sort(key=lambda d: -d.ndim)  # stacks before single images
    return found[:1]


def _check_image(data: Any, label: str) -> np.ndarray:
    data = np.asarray(data)
    if data.ndim != 2 or data.size == 0 or data.dtype.kind not in "uif":
        raise FrameError(f"not a 2D numeric image (shape {data.shape}, type {data.dtype})", label)
    return np.asarray(data)


_PONI_NUMBERS = (
    "distance",
    "poni1",
    "poni2",
    "rot1",
    "rot2",
    "rot3",
    "wavelength",
    "pixelsize1",
    "pixelsize2",
)


def _check_poni(path: Path) -> None:
    """The numeric lines of a ``.poni`` (``Distance: 0.14``…) hold finite numbers: else a FrameError
    naming the line (pyFAI's own message would not)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise FrameError(f"cannot read geometry: {exc.strerror or exc}", path) from None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in _PONI_NUMBERS:
            try:
                ok = np.isfinite(float(value.strip()))
            except ValueError:
                ok = False
            if not ok:
                raise FrameError(
                    f"{key.strip()} is not a finite number: {value.strip()[:40]!r}", path
                )


def _poni_why(exc: BaseException, log: list[logging.LogRecord]) -> str:
    """One short line for pyFAI's failure to load a geometry (no detector list, no traceback)."""
    said = " ".join(str(exc).split())
    unknown = re.match(r"Detector (\S+) is unknown", said)
    if unknown:
        return f"unknown detector {unknown.group(1)!r} (see pyFAI's detector names)"
    if any("parse config" in r.getMessage() for r in log) or "JSON" in type(exc).__name__:
        return f"the Detector_config line is not valid JSON ({said[:120]})"
    return f"{type(exc).__name__}: {said[:160]}"


def _why(exc: BaseException) -> str:
    """The reader's reason in one line; a slip inside the reader on a broken file (an
    AttributeError deep in fabio) is said as what it means: the file is corrupt."""
    if isinstance(exc, (AttributeError, TypeError, KeyError, IndexError, AssertionError)):
        return f"corrupt or not an image of this format (the reader failed: {type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def save_mask(mask: np.ndarray, path: str | Path) -> Path:
    """Write a bool mask as an EDF image (int8, 1 = masked, as pyFAI and ``--mask FILE`` read it),
    atomically and never over an existing file (:class:`FileExistsError`)."""
    import fabio.edfimage

    path = Path(path)
    with atomic_path(path, suffix=".edf", overwrite=False) as tmp:
        fabio.edfimage.EdfImage(data=np.asarray(mask, dtype=np.int8)).write(str(tmp))
    return path


def load_mask(path: str | Path) -> np.ndarray:
    """A mask image (EDF, TIFF, … or ``.npy``) as a bool array; non-zero means masked (pyFAI)."""
    path = Path(path)
    if not path.is_file():
        raise FrameError("no such mask file", path)
    try:
        if path.suffix.lower() == ".npy":
            data = np.load(path, allow_pickle=False)
        else:
            import fabio

            with fabio.open(str(path)) as img:
                data = img.data
    except Exception as exc:
        raise FrameError(f"cannot read mask: {_why(exc)}", path) from exc
    data = np.asarray(data)
    if data.ndim != 2 or data.dtype.kind not in "biuf":
        raise FrameError(f"a mask must be a 2D numeric image, got shape {data.shape}", path)
    return np.asarray(data != 0)


class Integrator:
    """pyFAI azimuthal integration to 2θ (degrees) for the geometry of a ``.poni`` file.

    The CSR engine is built once (per number of points) and reused for every frame; frames must
    have the detector's shape. Pixels masked by the detector (module gaps), negative counts of
    integer frames (gap/bad-pixel flags), the saturation value of unsigned frames (Eiger flags) and
    NaN are excluded. ``npt`` defaults to about two points per pixel along the radius.
    """

    def __init__(
        self, poni_path: str | Path, npt: int | None = None, wavelength: float | None = None
    ) -> None:
        self.poni_path = Path(poni_path)
        if not self.poni_path.is_file():
            raise FrameError("geometry file not found", self.poni_path)
        _check_poni(self.poni_path)
        import pyFAI

        with library_log("pyFAI") as log:
            try:
                self.ai = pyFAI.load(str(self.poni_path))
            except Exception as exc:  # pyFAI raises many types on broken files
                raise FrameError(
                    f"cannot read geometry: {_poni_why(exc, log)}", self.poni_path
                ) from None
        if not np.isfinite(self.ai.dist) or self.ai.dist <= 0:
            raise FrameError("geometry lacks a positive distance", self.poni_path)
        self.wavelength_source = "poni"
        if not self.ai.wavelength:  # a geometry without one: --wavelength (Å) serves
            if not wavelength:
                raise FrameError(
                    "geometry states no wavelength: give it with --wavelength (Å)", self.poni_path
                )
            self.ai.wavelength = wavelength * 1e-10
            self.wavelength_source = "option"
        self.wavelength = float(self.ai.wavelength) * 1e10
        shape = self.ai.detector.shape
        if shape is None:
            raise FrameError("the detector in this geometry has no shape", self.poni_path)
        self.shape: tuple[int, int] = (int(shape[0]), int(shape[1]))
        tth = self.ai.array_from_unit(self.shape, "center", "2th_deg")
        self.pixel_deg = float(np.degrees(self.ai.detector.pixel1 / self.ai.dist))
        self.npt = npt or int(2 * np.ceil(tth.max() / self.pixel_deg))
        self.two_theta = tth
        mask = self.ai.detector.mask
        self.detector_mask = (
            np.zeros(self.shape, bool) if mask is None else np.asarray(mask, dtype=bool)
        )
        self._solid_angle = self.ai.solidAngleArray(self.shape).astype(np.float32)
        self._engines: dict[int, tuple[Any, np.ndarray]] = {}

    @cached_property
    def mask_geometry(self) -> MaskGeometry:
        """Pixel bins of :func:`~xrdmtl.io.masking.auto_mask` (computed once per geometry)."""
        chi = self.ai.center_array(self.shape, unit="chi_rad", scale=False)
        return MaskGeometry.build(
            self.two_theta, np.asarray(chi), self.pixel_deg, self.detector_mask
        )

    def auto_mask(self, frame: np.ndarray, source: str = "<frame>", **options: Any) -> np.ndarray:
        """:func:`~xrdmtl.io.masking.auto_mask` of ``frame`` on this detector (``options``: its
        thresholds); a frame of the wrong shape is a FrameError."""
        return self.find_spots(frame, source, **options).mask()

    def find_spots(self, frame: np.ndarray, source: str = "<frame>", **options: Any) -> Spots:
        """:func:`~xrdmtl.io.masking.find_spots` of ``frame`` on this detector (``options``: its
        thresholds); a frame of the wrong shape is a FrameError."""
        _, valid = self.prepare(frame, source=source)
        return find_spots(np.asarray(frame), valid, self.mask_geometry, **options)

    def grain_mask(
        self,
        frame: np.ndarray,
        spot_lines: SpotLines,
        npt: int | None = None,
        source: str = "<frame>",
    ) -> tuple[np.ndarray, int]:
        """The auto mask of ``frame`` without the spots (anvil-like blobs, compact spots with a hot
        core) that lie on a line ``spot_lines`` names in the frame integrated unmasked (within its
        half width, at least one pixel), and how many spots it spared."""
        spots = self.find_spots(frame, source)
        if not spots.blobs.size:
            return spots.mask(), 0
        centres, half = spot_lines(self.integrate(frame, None, npt, source))
        spare = on_lines(spots.two_theta, centres, np.maximum(half, self.pixel_deg))
        return spots.mask(spare), int(spare.sum())

    def _engine(self, npt: int) -> tuple[Any, np.ndarray]:
        """(pyFAI's CSR matrix as scipy ``csr_matrix``, bin centres in degrees) for ``npt`` points,
        built by pyFAI on first use."""
        if npt not in self._engines:
            from scipy.sparse import csr_matrix

            res = self.ai.integrate1d(
                np.zeros(self.shape, np.float32),
                npt,
                unit="2th_deg",
                method=METHOD,
                dummy=float(DUMMY),
                delta_dummy=DELTA_DUMMY,
            )
            eng = self.ai.engines[res.method].engine
            matrix = csr_matrix(
                (np.asarray(eng.data), np.asarray(eng.indices), np.asarray(eng.indptr)),
                shape=(len(res.radial), self._solid_angle.size),
            )
            self._engines[npt] = (matrix, np.asarray(res.radial))
        return self._engines[npt]

    def prepare(
        self, frame: np.ndarray, mask: np.ndarray | None = None, source: str = "<frame>"
    ) -> tuple[np.ndarray, np.ndarray]:
        """(float32 copy of ``frame`` with excluded pixels set to 0, bool array of valid pixels);
        excluded: flag values (see the class), NaN and ``mask``; a wrong shape is a FrameError."""
        frame = np.asarray(frame)
        if frame.shape != self.shape:
            raise FrameError(
                f"frame shape {frame.shape} does not match the detector "
                f"{self.shape} of {self.poni_path.name}",
                source,
            )
        data = frame.astype(np.float32)
        kind = frame.dtype.kind
        if kind == "i":
            np.putmask(data, frame < 0, DUMMY)
        elif kind == "u":
            np.putmask(data, frame == np.iinfo(frame.dtype).max, DUMMY)
        else:
            np.putmask(data, ~np.isfinite(data), DUMMY)
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != self.shape:
                raise FrameError(
                    f"mask shape {mask.shape} does not match the detector {self.shape}", source
                )
            data[mask] = DUMMY
        valid = data != DUMMY
        np.putmask(data, ~valid, 0.0)
        return data, valid

    def integrate(
        self,
        frame: np.ndarray,
        mask: np.ndarray | None = None,
        npt: int | None = None,
        source: str = "<frame>",
    ) -> Pattern:
        """Azimuthal average against 2θ (degrees): per bin, counts over solid angle of the valid
        pixels (as pyFAI's ``integrate1d``), from pyFAI's CSR matrix reused for every frame."""
        matrix, radial = self._engine(npt or self.npt)
        data, valid = self.prepare(frame, mask, source)
        signal = matrix @ data.ravel()
        norm = matrix @ (self._solid_angle.ravel() * valid.ravel())
        filled = norm > 0
        intensity = signal[filled] / norm[filled]
        if filled.sum() < 10:
            raise FrameError("fewer than 10 integration bins hold valid pixels", source)
        return Pattern(
            radial[filled],
            intensity,
            unit="2th_deg",
            wavelength=self.wavelength,
            source=source,
            meta={
                "poni": str(self.poni_path),
                "calibrated_geometry": True,
                "wavelength_source": self.wavelength_source,
                "masked_pixels": None if mask is None else int(np.count_nonzero(mask)),
            },
        )

    def save(
        self,
        frame: np.ndarray,
        path: str | Path,
        mask: np.ndarray | None = None,
        npt: int | None = None,
        source: str = "<frame>",
    ) -> Path:
        """Integrate ``frame`` and write pyFAI's own 1D text format (header with the geometry,
        columns ``2th_deg I``) atomically to ``path``."""
        path = Path(path)
        data, valid = self.prepare(frame, mask, source)
        np.putmask(data, ~valid, DUMMY)
        with atomic_path(path) as tmp:
            tmp.unlink()  # pyFAI refuses to overwrite a file
            self.ai.integrate1d(
                data,
                npt or self.npt,
                unit="2th_deg",
                method=METHOD,
                dummy=float(DUMMY),
                delta_dummy=DELTA_DUMMY,
                filename=str(tmp),
            )
            text = tmp.read_text().replace(f"# --> {tmp}", f"# --> {path.name}")
            tmp.write_text(text)
        return path


def patterns_from_frames(
    path: str | Path,
    integrator: Integrator,
    mask: Literal["none", "auto"] | np.ndarray = "none",
    npt: int | None = None,
    keep_mask: bool = False,
    spot_lines: SpotLines | None = None,
) -> Iterator[tuple[str, Pattern | FrameError]]:
    """Integrate every frame of ``path`` (``mask``: none, auto, or a bool image), yielding
    ``(label, Pattern)`` or ``(label, FrameError)`` per frame so that a batch goes on. With
    ``spot_lines`` the auto mask spares the spots on the lines it names (:meth:`Integrator.grain_mask`;
    ``meta["spared_spots"]`` counts them). With ``keep_mask`` each pattern of an ``auto`` mask holds
    the mask in ``meta["mask"]`` (to save it)."""
    frames = read_frames(path)
    label = str(path)
    while True:
        try:
            label, frame = next(frames)
        except StopIteration:
            return
        except FrameError as exc:  # the file (or the rest of a stack) cannot be read
            yield (exc.source or label), exc
            return
        try:
            spared: int | None = None
            m: np.ndarray | None = None
            auto = isinstance(mask, str) and mask == "auto"
            if auto and spot_lines is not None:
                m, spared = integrator.grain_mask(frame, spot_lines, npt, label)
            elif auto:
                m = integrator.auto_mask(frame, source=label)
            elif not isinstance(mask, str):
                m = mask
            pattern = integrator.integrate(frame, mask=m, npt=npt, source=label)
            pattern.meta["mask"] = str(mask) if isinstance(mask, str) else "file"
            if spared is not None:
                pattern.meta["spared_spots"] = spared
            if keep_mask and m is not None and isinstance(mask, str):
                pattern.meta["mask_array"] = m
            yield label, pattern
        except FrameError as exc:
            yield label, exc
