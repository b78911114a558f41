"""Every 1D pattern file format → :class:`~xrdmtl.physics.pattern.Pattern`, and batch input expansion.

Formats are told apart by content first (NumPy magic, XML, a step-scan line) and by extension
second; the text formats (pyFAI/Dioptas output, Fit2D ``.chi``, GSAS ``.xye``, plain xy/CSV, RRUFF,
inXitu ``.plv``) share one parser: header lines, then a numeric block parsed by NumPy. Every
failure is a :class:`~xrdmtl.errors.PatternError` naming the file and the problem.
"""

from __future__ import annotations

import glob
import io
import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import numpy as np
from defusedxml import ElementTree as SafeET

from ..errors import PatternError
from ..physics.pattern import Pattern, validate_xy
from ..physics.profiles import render_sticks
from ..physics.units import CU_KALPHA, normalize_unit

PATTERN_EXTENSIONS = frozenset(
    {".xy", ".xye", ".dat", ".chi", ".txt", ".csv", ".plv", ".xrdml", ".npy"}
)

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_TOKEN = re.compile(rf"{_NUM}|[-+]?(?:nan|inf(?:inity)?)", re.IGNORECASE)
_SPLIT = re.compile(r"[\s,;]+")
_WAVE_UNIT = r"(m|nm|pm|a|å|ang|angstroms?)(?![a-z])"
_WAVE_JSON = re.compile(rf'"wavelength"\s*:\s*({_NUM})', re.IGNORECASE)
_WAVE_TEXT = re.compile(
    rf"wave\s*length\s*(?:[(\[]\s*{_WAVE_UNIT}\s*[)\]])?\s*[:=]?\s*({_NUM})\s*(?:{_WAVE_UNIT})?",
    re.IGNORECASE,
)
_KALPHA = re.compile(rf"\b(?:k[-_ ]?)?alpha[-_ ]?([12])(?!\d)\s*[=:]?\s*({_NUM})", re.IGNORECASE)
_RATIO = re.compile(rf"\bratio\s*[=:]?\s*({_NUM})", re.IGNORECASE)
_TO_ANGSTROM = {"m": 1e10, "nm": 10.0, "pm": 0.01}
_GEOMETRY = {k: re.compile(rf'"{k}"\s*:\s*({_NUM})') for k in ("dist", "rot1", "rot2")}
# an integration of a calibrated frame: a pyFAI header with the detector distance (JSON or the older
# "Distance Sample to Detector" line), or xrdmtl's own (``--save-integrated``) naming its .poni
_INTEGRATED_WITH_PONI = re.compile(
    r'"(?:dist"\s*:\s*[-+.\d]|poni"\s*:\s*")|Distance Sample to Detector:\s*[-+.\d]'
)
# a computed peak table (RRUFF's patterns computed from a structure, XPOW): sticks, not a profile
_PEAK_TABLE = re.compile(r"2-THETA\s+INTENSITY\s+D-SPACING", re.IGNORECASE)
STICK_FWHM_DEG = 0.1  # a peak table's sticks are drawn as lines of a lab diffractometer's width
STICK_STEP_DEG = 0.01
_STEP_LINE = re.compile(rf"\s*({_NUM})\s+({_NUM})\s+({_NUM})(?:\s+\D.*)?$")
# x-axis labels → unit, tried in order on the start of the column header (lower case)
_LABELS = (
    (re.compile(r"2th_rad"), "2th_rad"),
    (re.compile(r"r_mm|radial distance|r\s*[(\[]\s*mm"), "r_mm"),
    (re.compile(r"q_nm\^-1|q\s*[(\[]?\s*(?:1/nm|/nm|nm\^?-1|nm⁻¹)"), "q_nm^-1"),
    (re.compile(r"q_a\^-1|q\s*[(\[]?\s*(?:1/[aå]|/[aå]|[aå]\^?-1|å⁻¹|angstroms?\^?-1)"), "q_A^-1"),
    (re.compile(r"2th|2[-_ ]?theta|two[-_ ]?theta|tth|2θ|angle|.*\bdeg"), "2th_deg"),
    (re.compile(r"d(?:[-_ ]?spacing|\s*[(\[_]\s*(?:a|å|angstroms?)\b|\b(?![-_.(*]))"), "d_A"),
)


@dataclass
class _Raw:
    """What a format parser found: columns plus whatever the file says about them."""

    x: np.ndarray
    y: np.ndarray
    fmt: str
    unit: str | None = None
    wavelength: float | None = None
    default_wavelength: float | None = None
    unknown_label: str | None = None  # a column header naming no unit we know
    geometry: dict[str, float] = field(default_factory=dict)  # pyFAI dist (m), rot1, rot2 (rad)
    meta: dict[str, Any] = field(default_factory=dict)


def load_pattern(
    path: str | Path, wavelength: float | None = None, x_unit: str | None = None
) -> Pattern:
    """Read a 1D pattern file of any supported format.

    ``wavelength`` (Å) is for files that state none: a file's own wavelength wins (the file describes
    its own x axis; a batch mixing ``.npy`` and pyFAI files needs the option for the first only), and
    where the two differ ``meta["wavelength_note"]`` says so. ``meta["wavelength_source"]`` is
    ``file``, ``option`` or ``default``. ``x_unit`` (2θ, Q in Å⁻¹ or nm⁻¹, d in Å; see
    :func:`xrdmtl.physics.units.normalize_unit`) is for files that name no unit (or one we do not
    know) instead of 2θ, the default: like the wavelength, a unit the file names wins, and
    ``meta["x_unit_note"]`` says so where the two differ.
    RRUFF powder files that state no wavelength get Cu Kα (1.5418 Å). Raises
    :class:`PatternError` naming the file and the problem for any bad input; never writes.
    """
    path = Path(path).expanduser()
    src = str(path)
    try:
        unit_override = None if x_unit is None else normalize_unit(x_unit)
    except ValueError as exc:
        raise PatternError(str(exc), src) from None
    data = _read_bytes(path)
    try:
        raw = _parse(data, path)
    except PatternError:
        raise
    except (ValueError, OverflowError, EOFError, ParseError) as exc:
        raise PatternError(f"unreadable {path.suffix or 'pattern'} file: {exc}", src) from None
    return _finish(raw, src, wavelength, unit_override)


def collect_inputs(
    paths: Sequence[str | Path], extensions: Collection[str] = PATTERN_EXTENSIONS
) -> tuple[list[Path], list[tuple[str, PatternError]]]:
    """Expand files, folders (recursively) and globs into a list of files, in argument order.

    Folders and globs contribute files whose extension is in ``extensions`` (hidden files and
    CSV tables with a ``file`` column, such as labels, are skipped); a file named explicitly is
    always kept. Paths that match nothing come back as ``(argument, PatternError)`` pairs so that
    a batch can report them and go on with the rest.
    """
    exts = {e.lower() for e in extensions}
    found: dict[Path, Path] = {}  # resolved → as given, first occurrence wins
    errors: list[tuple[str, PatternError]] = []

    def add(files: Sequence[Path]) -> None:
        for f in files:
            found.setdefault(f.resolve(), f)

    for item in map(str, paths):
        p = Path(item).expanduser()
        if p.is_file():
            add([p])
        elif p.is_dir():
            files = _scan_folder(p, exts)
            if not files:
                errors.append(
                    (item, PatternError(f"folder holds no {_ext_list(exts)} files", item))
                )
            add(files)
        elif any(c in item for c in "*?["):
            files = []
            for m in sorted(glob.glob(str(p), recursive=True)):
                mp = Path(m)
                if mp.is_dir():
                    files.extend(_scan_folder(mp, exts))
                elif _wanted(mp, exts):
                    files.append(mp)
            if not files:
                errors.append((item, PatternError("no pattern file matches this pattern", item)))
            add(files)
        elif p.exists():
            errors.append((item, PatternError("not a regular file", item)))
        else:
            errors.append((item, PatternError("no such file or directory", item)))
    return list(found.values()), errors


def _ext_list(exts: Collection[str]) -> str:
    return "/".join(sorted(exts))


def _scan_folder(folder: Path, exts: Collection[str]) -> list[Path]:
    return sorted(
        f
        for f in folder.rglob("*")
        if not any(part.startswith(".") for part in f.relative_to(folder).parts)
        and f.is_file()
        and _wanted(f, exts)
    )


def _wanted(f: Path, exts: Collection[str]) -> bool:
    """Known extension, and not a CSV table (labels, predictions) whose first column is ``file``."""
    if f.suffix.lower() not in exts:
        return False
    if f.suffix.lower() != ".csv":
        return True
    try:
        with f.open("rb") as fh:
            head = fh.read(64).lstrip(b"\xef\xbb\xbf").lower()
    except OSError:
        return True
    return not re.match(rb'"?file"?\s*[,;\t]', head)


def _read_bytes(path: Path) -> bytes:
    src = str(path)
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise PatternError("is a directory, not a pattern file", src) from None
    except FileNotFoundError:
        raise PatternError("no such file", src) from None
    except PermissionError:
        raise PatternError("cannot read the file: permission denied", src) from None
    except (OSError, ValueError) as exc:  # ValueError: a path with a NUL byte
        raise PatternError(
            f"cannot read the file: {getattr(exc, 'strerror', None) or exc}", src
        ) from None


def _parse(data: bytes, path: Path) -> _Raw:
    src, ext = str(path), path.suffix.lower()
    if not data.strip():
        raise PatternError("empty file", src)
    if data.startswith(b"\x93NUMPY"):
        return _parse_npy(data, src)
    if data.startswith(b"PK\x03\x04"):
        raise PatternError(
            "a zip/.npz archive, not a single pattern: save one array with np.save", src
        )
    if ext == ".npy":
        if data[:1] == b"\x80":
            raise PatternError(
                "holds pickled Python objects, refused: store a plain float array", src
            )
        raise PatternError("not a NumPy .npy file (no NumPy header)", src)
    if b"\x00" in data:
        raise PatternError("binary content, not a text pattern", src)
    text = _decode(data)
    if ext == ".xrdml" or text.lstrip().startswith("<"):
        return _parse_xrdml(data, src)
    return _parse_text(text, src)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _parse_npy(data: bytes, src: str) -> _Raw:
    fh = io.BytesIO(data)
    version = np.lib.format.read_magic(fh)
    read_header = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
    )
    shape, fortran, dtype = read_header(fh)
    if dtype.hasobject:
        raise PatternError("holds pickled Python objects, refused: store a plain float array", src)
    if dtype.kind not in "fiu":
        raise PatternError(f"array of dtype {dtype}, expected real numbers", src)
    if math.prod(shape) * dtype.itemsize > len(data) - fh.tell():
        raise PatternError(f"truncated .npy file: its header promises shape {shape}", src)
    # the header is parsed once (np.load would parse it again: half the cost of a small file)
    flat = np.frombuffer(data, dtype, count=math.prod(shape), offset=fh.tell())
    arr = flat.reshape(shape, order="F" if fortran else "C").copy()  # writable, as np.load's
    if arr.ndim != 2:
        raise PatternError(
            f"{arr.ndim}-D array of shape {arr.shape}, expected 2×N or N×2 (x, intensity)", src
        )
    if arr.shape[0] in (2, 3) and arr.shape[1] > 3:
        x, y = arr[0], arr[1]
    elif arr.shape[1] in (2, 3):
        x, y = arr[:, 0], arr[:, 1]
    elif min(arr.shape) >= 16:  # a detector image, not a table of columns
        raise PatternError(
            f"a 2D image of {arr.shape[0]}×{arr.shape[1]} pixels, not a 1D pattern (2×N or N×2): "
            "give its detector geometry with --poni FILE to integrate it",
            src,
        )
    else:
        raise PatternError(f"array of shape {arr.shape}, expected 2×N or N×2 (x, intensity)", src)
    return _Raw(x, y, "npy", meta={"shape": list(arr.shape)})


def _parse_xrdml(data: bytes, src: str) -> _Raw:
    try:
        root = SafeET.fromstring(data)
    except LookupError as exc:  # an unknown encoding in the XML declaration
        raise PatternError(f"unreadable XML: {exc}", src) from None
    measurement = _child(root, "xrdMeasurement") if _local(root.tag) != "xrdMeasurement" else root
    if measurement is None:
        raise PatternError("XML without an xrdMeasurement element: not an .xrdml pattern", src)
    scans = [e for e in measurement if _local(e.tag) == "scan"]
    points = _child(scans[0], "dataPoints") if scans else None
    if points is None:
        raise PatternError("xrdml file without scan data points", src)
    counts = _child(points, "intensities")
    if counts is None:
        counts = _child(points, "counts")
    if counts is None or not (counts.text or "").strip():
        raise PatternError("xrdml scan without intensities or counts", src)
    y = np.array((counts.text or "").split(), dtype=float)
    attenuation = _child(points, "beamAttenuationFactors")
    if attenuation is not None and (attenuation.text or "").strip():
        factors = np.array((attenuation.text or "").split(), dtype=float)
        if factors.size == y.size:
            y = y * factors
    axes = [e for e in points if _local(e.tag) == "positions"]
    pos = next((e for e in axes if _axis_key(e) == "2theta"), axes[0] if len(axes) == 1 else None)
    if pos is None:
        raise PatternError("xrdml scan without 2Theta positions", src)
    unit = _xrdml_unit(pos, src)
    listed = _child(pos, "listPositions")
    if listed is not None:
        x = np.array((listed.text or "").split(), dtype=float)
        if x.size != y.size:
            raise PatternError(f"{x.size} positions but {y.size} intensities", src)
    else:
        start, end = _child(pos, "startPosition"), _child(pos, "endPosition")
        if start is None or end is None:
            raise PatternError("xrdml positions without start/end or a list", src)
        x = np.linspace(float(start.text or ""), float(end.text or ""), y.size)
    return _Raw(x, y, "xrdml", unit, _xrdml_wavelength(measurement), meta={"scans": len(scans)})


def _local(tag: object) -> str:
    return str(tag).rsplit("}", 1)[-1]


def _child(parent: Element, name: str) -> Element | None:
    return next((e for e in parent.iter() if _local(e.tag) == name), None)


def _axis_key(positions: Element) -> str:
    return re.sub(r"[^a-z0-9]", "", positions.get("axis", "").lower())


def _xrdml_unit(positions: Element, src: str) -> str:
    axis, unit = _axis_key(positions), positions.get("unit", "deg").lower()
    if axis == "2theta" and "deg" in unit:
        return "2th_deg"
    if axis == "q":
        return "q_nm^-1" if "nm" in unit else "q_A^-1"
    raise PatternError(f"unknown x axis {axis!r} in {unit!r}", src)


def _xrdml_wavelength(measurement: Element) -> float | None:
    used = _child(measurement, "usedWavelength")
    if used is None:
        return None
    values = {}
    for name in ("kAlpha1", "kAlpha2", "kBeta", "ratioKAlpha2KAlpha1"):
        e = _child(used, name)
        text = "" if e is None else (e.text or "").strip()
        if text:
            values[name] = float(text)
    intended = used.get("intended", "").lower().replace(" ", "")
    if intended == "k-beta" and "kBeta" in values:
        return values["kBeta"]
    if "kAlpha1" not in values:
        return None
    if intended == "k-alpha1" or "kAlpha2" not in values:
        return values["kAlpha1"]
    ratio = values.get("ratioKAlpha2KAlpha1", 0.5)
    return (values["kAlpha1"] + ratio * values["kAlpha2"]) / (1.0 + ratio)


def _is_data(line: str) -> bool:
    """At least two fields, all numbers (separated by whitespace, commas or semicolons)."""
    tokens = _SPLIT.split(line.strip().rstrip(",;"))
    return len(tokens) >= 2 and all(_TOKEN.fullmatch(t) for t in tokens)


def _parse_text(text: str, src: str) -> _Raw:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _is_data(line)), None)
    if start is None:
        raise PatternError("no numeric data (expected columns of x and intensity)", src)
    header = [line.strip() for line in lines[:start]]
    head = "\n".join(header)
    wavelength = _header_wavelength(head)
    rruff = re.search(r"^##(?:NAMES|RRUFFID)=", head, re.MULTILINE) is not None
    meta = {"header_lines": start}
    step = _step_scan(lines, start)
    if step is not None:
        x, y = step
        return _Raw(x, y, "step-scan", "2th_deg", wavelength, meta=meta)
    end = len(lines)
    while end > start and not _is_data(lines[end - 1]):
        end -= 1
    block = "\n".join(lines[start:end])
    first = lines[start]
    delimiter = ";" if ";" in first else "," if "," in first else None
    if delimiter == ";":
        block = block.replace(",", ".")  # semicolon CSV: decimal commas
    try:
        table = np.loadtxt(
            io.StringIO(block), delimiter=delimiter, comments="#", usecols=(0, 1), ndmin=2
        )
    except ValueError as exc:
        raise PatternError(f"non-numeric or ragged data after line {start}: {exc}", src) from None
    if _PEAK_TABLE.search(head):
        return _peak_table(table, wavelength, meta)
    unit, unknown = _header_unit(header, head)
    geometry = {k: float(m.group(1)) for k, p in _GEOMETRY.items() if (m := p.search(head))}
    fmt = "rruff" if rruff else "pyfai" if _is_pyfai(head) else "text"
    if _INTEGRATED_WITH_PONI.search(head):
        meta = {**meta, "calibrated_geometry": True}
    return _Raw(
        table[:, 0],
        table[:, 1],
        fmt,
        unit,
        wavelength,
        CU_KALPHA if rruff else None,
        unknown,
        geometry,
        meta,
    )


def _peak_table(sticks: np.ndarray, wavelength: float | None, meta: dict[str, Any]) -> _Raw:
    """A computed peak table (2θ, intensity, d, hkl per row; coincident reflections repeat a 2θ)
    read as the profile it stands for: each stick a Gaussian of :data:`STICK_FWHM_DEG`."""
    x, y = render_sticks(sticks[:, 0], sticks[:, 1], STICK_FWHM_DEG, STICK_STEP_DEG, 3.0)
    meta = {**meta, "sticks": len(sticks), "stick_fwhm_deg": STICK_FWHM_DEG}
    return _Raw(x, y, "peak-table", "2th_deg", wavelength, CU_KALPHA, meta=meta)


def _step_scan(lines: list[str], start: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Philips/LHPM layout: a ``start step end`` line, then counts in rows (any number a row)."""
    if start == 0:
        return None
    m = _STEP_LINE.match(lines[start - 1])
    if m is None:
        return None
    first, step, last = (float(g) for g in m.groups())
    if not (step > 0 and last > first):
        return None
    try:
        counts = np.array(" ".join(lines[start:]).split(), dtype=float)
    except ValueError:
        return None
    n = int(round((last - first) / step)) + 1
    if abs(counts.size - n) > 1:
        return None
    return first + step * np.arange(counts.size), counts


def _header_wavelength(head: str) -> float | None:
    """Wavelength in Å from a header: pyFAI JSON (m), ``Wavelength:`` lines, or Kα1/Kα2 lines."""
    m = _WAVE_JSON.search(head)
    if m:
        return _metres_to_angstrom(float(m.group(1)))
    m = _WAVE_TEXT.search(head)
    if m:
        value = float(m.group(2))
        unit = (m.group(3) or m.group(1) or "").lower()
        if unit in _TO_ANGSTROM:
            return float(f"{value * _TO_ANGSTROM[unit]:.12g}")
        return _metres_to_angstrom(value) if not unit and 0 < value < 1e-6 else value
    alphas = {k: float(v) for k, v in _KALPHA.findall(head)}
    if "1" not in alphas:
        return None
    ratio = _RATIO.search(head)
    if "2" in alphas and ratio:
        r = float(ratio.group(1))
        return (alphas["1"] + r * alphas["2"]) / (1.0 + r)
    return alphas["1"]


def _is_pyfai(head: str) -> bool:
    return '"poni_version"' in head or "pyfai" in head.lower()


def _metres_to_angstrom(value: float) -> float:
    """Metres to Å, without the float noise of ×1e10 (5.61e-11 m → 0.561, not 0.5609999…)."""
    return float(f"{value * 1e10:.12g}")


def _header_unit(header: list[str], head: str) -> tuple[str | None, str | None]:
    """(unit, None) for the unit the column header names; (None, label) for a column header that
    names a unit we do not know; (None, None) when nothing names one (2θ is then assumed)."""
    lines = [h for h in (s.lstrip("#!%/* \t").strip() for s in header) if h]
    if not lines:
        return None, None
    label = lines[-1]
    if len(lines) >= 3 and re.fullmatch(r"\d+", label):  # Fit2D .chi: title, x, y, count
        label = lines[-3]
    low = label.lower().strip("\"'")
    for pattern, unit in _LABELS:
        if pattern.match(low):
            return unit, None
    fields = _SPLIT.split(low)
    if re.match(r"q\b", low) or _is_pyfai(head) or fields[1:] in (["i"], ["i", "sigma"]):
        return None, label
    return None, None


def _radius_to_tth(r_mm: np.ndarray, geometry: dict[str, float], src: str) -> np.ndarray:
    """Detector radius (mm) to 2θ (°), exact only for an untilted detector (rot1 = rot2 = 0)."""
    dist = geometry.get("dist", 0.0)
    if not (dist > 0 and geometry.get("rot1") == 0 and geometry.get("rot2") == 0):
        raise PatternError(
            "x is a detector radius (r_mm): converting it to 2θ needs an untilted geometry "
            "(dist, rot1 = rot2 = 0) in the header; re-integrate in 2th_deg or q_nm^-1",
            src,
        )
    return np.rad2deg(np.arctan(r_mm * 1e-3 / dist))


def _finish(raw: _Raw, src: str, wavelength: float | None, unit_override: str | None) -> Pattern:
    x, y = np.asarray(raw.x, dtype=float), np.asarray(raw.y, dtype=float)
    validate_xy(x, y, src)
    meta = {"format": raw.fmt, **raw.meta}
    if unit_override is not None and raw.unit is not None and unit_override != raw.unit:
        meta["x_unit_note"] = (
            f"the file states x in {raw.unit}, used instead of --x-unit {unit_override}"
        )
    if unit_override is not None and raw.unit is None:  # the file's own unit wins (load_pattern)
        unit = unit_override
    elif raw.unknown_label is not None:
        raise PatternError(
            f"unknown x unit in column header {raw.unknown_label!r}: give x_unit (--x-unit) "
            "as 2th_deg, q_A^-1, q_nm^-1 or d_A",
            src,
        )
    elif raw.unit == "r_mm":
        x, unit = _radius_to_tth(x, raw.geometry, src), "2th_deg"
    elif raw.unit == "2th_rad":
        x, unit = np.rad2deg(x), "2th_deg"
    elif raw.unit is None:
        unit, meta["x_unit_assumed"] = "2th_deg", True
    else:
        unit = raw.unit
    if (
        raw.wavelength is not None
    ):  # the file's own wavelength wins over the option (see load_pattern)
        if wavelength is not None and abs(wavelength - raw.wavelength) > 1e-4 * raw.wavelength:
            meta["wavelength_note"] = (
                f"the file states λ = {raw.wavelength:g} Å, used instead of "
                f"--wavelength {wavelength:g} Å"
            )
        wavelength, meta["wavelength_source"] = raw.wavelength, "file"
    elif wavelength is not None:
        meta["wavelength_source"] = "option"
    elif raw.default_wavelength is not None:
        wavelength, meta["wavelength_source"] = raw.default_wavelength, "default"
    if unit == "2th_deg" and wavelength is None:
        raise PatternError("x is 2θ but the file states no wavelength: give --wavelength (Å)", src)
    if unit == "2th_deg" and np.abs(x).max() >= 180:
        raise PatternError("2θ values beyond 180°: is the x unit right? (see --x-unit)", src)
    if unit == "d_A" and x.min() <= 0:
        raise PatternError("d-spacings must be positive: is the x unit right?", src)
    if unit.startswith("q_") and x.min() < 0:
        raise PatternError("negative Q values: is the x unit right?", src)
    return Pattern(x, y, unit, None if wavelength is None else float(wavelength), src, meta)
