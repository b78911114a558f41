"""Fuzz every reader and loader with hypothesis: whatever the bytes, only the project's own error
types escape (issue 16). Kept fast: modest example counts, no deadline."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xrdmtl.errors import FrameError, LabelsError, ModelError, PatternError, XrdmtlError

FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)

NUM = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(lambda v: f"{v:g}"),
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from(["nan", "inf", "-", "1e999", "0x10", ""]),
)
LINE = st.lists(NUM, min_size=0, max_size=4).flatmap(
    lambda xs: st.sampled_from([" ", ",", ";", "\t"]).map(lambda sep: sep.join(xs))
)
HEADER = st.sampled_from(
    [
        "",
        "# 2th_deg I",
        "# q_nm^-1 I",
        "# q_A^-1 I",
        "# d_A I",
        "# r_mm I",
        "# chi I",
        "2theta,intensity",
        '# {"wavelength": 7.1e-11, "poni_version": 2.1}',
        "# Wavelength: 0.71 A",
        "##NAMES=x\n##WAVELENGTH=abc",
        "# Kalpha1 1.54 Kalpha2 1.544 ratio 0.5",
        "5 0.1 10",
        "<?xml version='1.0'?><xrdMeasurement/>",
        '<xrdMeasurement><scan><dataPoints><positions axis="2Theta" unit="deg"><startPosition>5</startPosition>'
        "<endPosition>x</endPosition></positions><intensities>1 2 3</intensities></dataPoints></scan></xrdMeasurement>",
    ]
)
TEXT = st.tuples(HEADER, st.lists(LINE, max_size=40)).map(lambda t: "\n".join([t[0], *t[1]]))
EXTENSIONS = [".xy", ".xye", ".dat", ".chi", ".txt", ".csv", ".plv", ".xrdml", ".npy", ""]


@contextmanager
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="xrdmtl-fuzz-") as d:
        yield Path(d)


def _npy_bytes(header: str, body: bytes) -> bytes:
    head = header.encode("latin-1", "replace")
    return b"\x93NUMPY\x01\x00" + len(head).to_bytes(2, "little") + head + body


NPY_HEADERS = st.sampled_from(
    [
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 100), }",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (100, 2), }",
        "{'descr': '|O', 'fortran_order': False, 'shape': (2, 3), }",
        "{'descr': '<c16', 'fortran_order': False, 'shape': (2, 50), }",
        "{'descr': '<f8', 'fortran_order': True, 'shape': (3, 3, 3), }",
        "{'descr': '<f8', 'shape': (-1, 2), }",
        "not a dict",
        "{'descr': 'xx'}",
        "",
    ]
)


def _load_pattern(path: Path, **kw: object) -> None:
    """Read ``path``: a PatternError, or a pattern a model can use (checked here), and the file
    left as it was."""
    from xrdmtl.io.readers import load_pattern
    from xrdmtl.physics.units import UNITS, normalize_unit

    before = path.read_bytes()
    try:
        p = load_pattern(path, **kw)  # type: ignore[arg-type]
    except PatternError:
        assert path.read_bytes() == before
        return
    assert path.read_bytes() == before
    assert p.x.ndim == 1 and p.x.shape == p.y.shape and p.x.size >= 10, (p.x.shape, p.y.shape)
    assert p.x.dtype.kind == p.y.dtype.kind == "f"
    assert np.isfinite(p.x).all() and np.isfinite(p.y).all()
    dx = np.diff(p.x)
    assert (dx > 0).all() or (dx < 0).all(), "x must be strictly sorted"
    assert np.ptp(p.y) > 0
    assert p.unit in UNITS
    if kw.get("x_unit"):
        assert p.unit == normalize_unit(str(kw["x_unit"]))
    if p.unit == "2th_deg":  # 2θ is usable only with a plausible wavelength
        assert p.wavelength is not None and 0.01 < p.wavelength < 10
    assert np.isfinite(p.q).all()


@FUZZ
@given(data=st.binary(max_size=600), ext=st.sampled_from(EXTENSIONS))
def test_pattern_reader_random_bytes(data: bytes, ext: str) -> None:
    with folder() as d:
        path = d / f"f{ext}"
        path.write_bytes(data)
        _load_pattern(path, wavelength=0.5)


@FUZZ
@given(
    text=TEXT,
    ext=st.sampled_from(EXTENSIONS),
    wavelength=st.sampled_from([None, 0.561, 1e-5, 1e5]),
    x_unit=st.sampled_from([None, "2th_deg", "q_A^-1", "q_nm^-1", "d_A", "furlongs"]),
)
def test_pattern_reader_text_like_patterns(
    text: str, ext: str, wavelength: float | None, x_unit: str | None
) -> None:
    with folder() as d:
        path = d / f"f{ext}"
        path.write_text(text, encoding="utf-8")
        _load_pattern(path, wavelength=wavelength, x_unit=x_unit)


GOOD_HEADERS = {  # header → x unit it names (None: the reader assumes 2θ)
    "": None,
    "# 2th_deg I": "2th_deg",
    "# q_nm^-1 I": "q_nm^-1",
    "# q_A^-1 I": "q_A^-1",
    "2theta,intensity": "2th_deg",
}
MUTATIONS = ["none", "swap", "nan", "duplicate", "inf", "flat", "short"]


def _near_valid(n: int, start: float, step: float, seed: int, mutation: str) -> np.ndarray:
    """An ``(n, 2)`` pattern with sorted x, then one ``mutation`` (``none``: left valid)."""
    rng = np.random.default_rng(seed)
    xy = np.column_stack([start + step * np.arange(n), 100 + 50 * rng.random(n)])
    k = int(rng.integers(1, n - 1))
    if mutation == "swap":
        xy[[k, k + 1], 0] = xy[[k + 1, k], 0]
    elif mutation in ("nan", "inf"):
        xy[k, int(rng.integers(0, 2))] = np.nan if mutation == "nan" else np.inf
    elif mutation == "duplicate":
        xy[k, 0] = xy[k - 1, 0]
    elif mutation == "flat":
        xy[:, 1] = 7.0
    elif mutation == "short":
        xy = xy[:5]
    return xy


@FUZZ
@given(
    header=st.sampled_from(sorted(GOOD_HEADERS)),
    sep=st.sampled_from([" ", ",", "\t"]),
    n=st.integers(12, 80),
    start=st.floats(0.5, 20.0),
    seed=st.integers(0, 1000),
    mutation=st.one_of(st.just("none"), st.sampled_from(MUTATIONS[1:])),  # half of them valid
    npy=st.booleans(),
)
def test_pattern_reader_near_valid_patterns(
    header: str, sep: str, n: int, start: float, seed: int, mutation: str, npy: bool
) -> None:
    """Valid patterns and patterns one defect away: a valid one reads (and satisfies what every
    read must), a defective one is a PatternError."""
    from xrdmtl.io.readers import load_pattern

    xy = _near_valid(n, start, 0.05, seed, mutation)
    with folder() as d:
        if npy:
            path = d / "f.npy"
            np.save(path, xy.T if seed % 2 else xy)
        else:
            path = d / "f.xy"
            rows = [sep.join(f"{v:.6g}" for v in row) for row in xy]
            path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
        kw = {"wavelength": 0.561}
        _load_pattern(path, **kw)
        if mutation == "none":  # a valid pattern must read
            load_pattern(path, **kw)
        else:
            with pytest.raises(PatternError):
                load_pattern(path, **kw)


@FUZZ
@given(header=NPY_HEADERS, body=st.binary(max_size=2000))
def test_pattern_reader_npy(header: str, body: bytes) -> None:
    with folder() as d:
        path = d / "f.npy"
        path.write_bytes(_npy_bytes(header, body))
        _load_pattern(path, wavelength=0.5)


FRAME_EXTENSIONS = [".edf", ".tif", ".cbf", ".h5", ".img", ".mccd", ".sfrm", ".npy"]


@FUZZ
@given(
    data=st.binary(max_size=3000),
    ext=st.sampled_from(FRAME_EXTENSIONS),
    prefix=st.sampled_from(
        [
            b"",
            b"{\nHeaderID = EH:000001:000000:000000 ;\nDim_1 = 8 ;\nDim_2 = 8 ;\nDataType = FloatValue ;\n}\n",
            b"II*\x00",
            b"MM\x00*",
            b"###CBF: VERSION",
            b"\x89HDF\r\n\x1a\n",
        ]
    ),
)
def test_frame_reader(data: bytes, ext: str, prefix: bytes) -> None:
    from xrdmtl.io.frames import load_mask, read_frames

    with folder() as d:
        path = d / f"f{ext}"
        path.write_bytes(prefix + data)
        try:
            for label, frame in read_frames(path):  # every frame read is a 2D image of numbers
                assert label.startswith(str(path))
                assert frame.ndim == 2 and frame.size > 0 and frame.dtype.kind in "iuf"
        except FrameError:
            pass
        try:
            mask = load_mask(path)
        except FrameError:
            return
        assert mask.dtype == bool and mask.ndim == 2


@FUZZ
@given(
    data=st.one_of(st.binary(max_size=400), st.text(max_size=400).map(lambda t: t.encode("utf-8"))),
    header=st.sampled_from(
        [
            b"",
            b"file,bastnaesite,calcite,rhenium\n",
            b"\xef\xbb\xbffile,calcite\n",
            b"\xff\xfe",
            b"file;calcite\n",
        ]
    ),
)
def test_labels_reader(data: bytes, header: bytes) -> None:
    from xrdmtl.io.labels import read_labels

    with folder() as d:
        path = d / "labels.csv"
        path.write_bytes(header + data)
        try:
            files, labels = read_labels(path, ["bastnaesite", "calcite", "rhenium"])
        except LabelsError:
            return
        assert labels.shape == (len(files), 3) and len(files) >= 1
        assert labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 1}
        assert all(isinstance(f, str) and f for f in files)


PONI_KEYS = [
    "poni_version",
    "Detector",
    "Detector_config",
    "Distance",
    "Poni1",
    "Poni2",
    "Rot1",
    "Rot2",
    "Rot3",
    "Wavelength",
    "PixelSize1",
    "PixelSize2",
    "SplineFile",
]
PONI_VALUES = st.one_of(
    NUM,
    st.sampled_from(
        [
            "Pilatus",
            "Pilatus1M",
            "Eiger4M",
            "Detector",
            "nosuch",
            "{",
            "{}",
            '{"pixel1": 1e-4, "pixel2": 1e-4, "max_shape": [8, 8]}',
            '{"pixel1": "a"}',
            "2.1",
            "2",
            "-1",
            "0",
        ]
    ),
    st.text(max_size=20),
)


@FUZZ
@given(
    lines=st.lists(st.tuples(st.sampled_from(PONI_KEYS), PONI_VALUES), max_size=10),
    junk=st.text(max_size=40),
)
def test_poni_loader(lines: list[tuple[str, str]], junk: str) -> None:
    from xrdmtl.io.frames import Integrator

    with folder() as d:
        path = d / "g.poni"
        path.write_text("\n".join([*(f"{k}: {v}" for k, v in lines), junk]), encoding="utf-8")
        with suppress(FrameError):
            Integrator(path, npt=50)


JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 5000),
        st.floats(allow_nan=False),
        st.text(max_size=8),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
META_KEYS = [
    "phases",
    "grid",
    "architecture",
    "thresholds",
    "calibration",
    "preprocessing",
    "adapter",
]


def _default_model() -> Path:
    return Path(str(resources.files("xrdmtl") / "data" / "models" / "default"))


@FUZZ
@given(
    edits=st.dictionaries(st.sampled_from(META_KEYS), JSON, max_size=3),
    drop=st.lists(st.sampled_from(META_KEYS), max_size=2),
)
def test_model_loader(edits: dict, drop: list[str]) -> None:
    from xrdmtl.model.files import load_model

    with folder() as d:
        model = d / "model"
        shutil.copytree(_default_model(), model)
        meta = json.loads((model / "model.json").read_text())
        meta.update(edits)
        for key in drop:
            meta.pop(key, None)
        (model / "model.json").write_text(json.dumps(meta))
        with suppress(ModelError):
            load_model(model)


@FUZZ
@given(data=st.binary(max_size=300))
def test_model_loader_random_files(data: bytes) -> None:
    from xrdmtl.model.files import load_model

    with folder() as d:
        model = d / "model"
        shutil.copytree(_default_model(), model)
        (model / "model.json").write_bytes(data)
        with suppress(ModelError):
            load_model(model)
        shutil.copy(_default_model() / "model.json", model / "model.json")
        (model / "model.safetensors").write_bytes(data)
        with suppress(ModelError):
            load_model(model)


def test_errors_are_one_line() -> None:
    """What the fuzzers accept is only worth it if the messages stay one line."""
    for cls in (PatternError, FrameError, LabelsError, ModelError):
        err = cls("two\nlines\tand  spaces", "some/file")
        assert isinstance(err, XrdmtlError) and "\n" not in str(err)
