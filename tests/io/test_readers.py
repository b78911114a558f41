"""Pattern readers: every format, every bad input, and fuzzing that only PatternError escapes."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from xrdmtl.errors import PatternError
from xrdmtl.io.readers import PATTERN_EXTENSIONS, collect_inputs, load_pattern
from xrdmtl.physics.pattern import Pattern
from xrdmtl.physics.units import CU_KALPHA, q_to_tth, tth_to_q

TTH = np.linspace(5.0, 40.0, 701)
PEAK = 20.0
INTENSITY = 10.0 + 100.0 * np.exp(-0.5 * ((TTH - PEAK) / 0.1) ** 2)


def rows(x: np.ndarray = TTH, y: np.ndarray = INTENSITY, sep: str = " ") -> str:
    return "\n".join(f"{a:.5f}{sep}{b:.4f}" for a, b in zip(x, y, strict=True)) + "\n"


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def peak_x(p: Pattern) -> float:
    return float(p.x[np.argmax(p.y)])


# ---------------------------------------------------------------- text formats


@pytest.mark.parametrize(
    ("name", "content", "unit", "wavelength"),
    [
        ("plain.xy", rows(), "2th_deg", None),
        ("plain.csv", "2theta,intensity\n" + rows(sep=","), "2th_deg", None),
        ("tabs.txt", "two_theta\tI\n" + rows(sep="\t"), "2th_deg", None),
        ("crlf.xy", rows().replace("\n", "\r\n"), "2th_deg", None),
        ("cr.xy", rows().replace("\n", "\r"), "2th_deg", None),
        ("semi.csv", "angle;counts\n" + rows(sep=";").replace(".", ","), "2th_deg", None),
        ("gsas.xye", "/* GSAS xye */\n" + rows(sep=" ").replace("\n", " 3.0\n"), "2th_deg", None),
        ("dioptas.xy", "# Wavelength: 3.344e-11 m\n# 2th_deg\tI\n" + rows(), "2th_deg", 0.3344),
        ("angstrom.xy", "# Wavelength (A): 0.561\n" + rows(), "2th_deg", 0.561),
        ("nm.xy", "# wavelength = 0.07093 nm\n" + rows(), "2th_deg", 0.7093),
        ("bare.xy", "# Wavelength: 7.093e-11\n" + rows(), "2th_deg", 0.7093),
        (
            "fit2d.chi",
            "scan_0001.edf\n2-Theta Angle (Degrees)\nIntensity\n       701\n" + rows(),
            "2th_deg",
            None,
        ),
        ("bom.csv", "\ufeff2θ (°),I\n" + rows(sep=","), "2th_deg", None),
    ],
)
def test_two_theta_text(tmp_path: Path, name: str, content: str, unit: str, wavelength) -> None:
    path = write(tmp_path / name, content)
    p = load_pattern(path, wavelength=None if wavelength else 1.0)
    assert p.unit == unit and p.source == str(path)
    assert p.wavelength == pytest.approx(wavelength or 1.0)
    assert p.x.size == TTH.size
    assert peak_x(p) == pytest.approx(PEAK, abs=1e-3)
    assert p.y.max() == pytest.approx(110.0, abs=1e-3)


@pytest.mark.parametrize(
    ("header", "scale", "unit"),
    [
        ("# q_A^-1  I", 1.0, "q_A^-1"),
        ("#q_nm^-1        I", 10.0, "q_nm^-1"),
        ("Q (1/A), intensity", 1.0, "q_A^-1"),
        ("scan.edf\nQ (Angstroms-1)\nIntensity\n  701", 1.0, "q_A^-1"),
        ("Q (nm-1)\tI", 10.0, "q_nm^-1"),
    ],
)
def test_q_text(tmp_path: Path, header: str, scale: float, unit: str) -> None:
    q = np.linspace(0.5, 5.0, 701)
    p = load_pattern(write(tmp_path / "q.xy", header + "\n" + rows(q * scale)))
    assert p.unit == unit and p.wavelength is None
    assert p.q == pytest.approx(q, rel=1e-5)


def test_d_spacing_text(tmp_path: Path) -> None:
    d = np.linspace(8.0, 1.0, 701)  # descending, as d-spacing lists usually are
    p = load_pattern(write(tmp_path / "d.csv", "d_A,I\n" + rows(d, sep=",")))
    assert p.unit == "d_A"
    assert p.q == pytest.approx(2 * np.pi / d, rel=1e-5)


def test_rruff_default_wavelength(test_data: Path) -> None:
    p = load_pattern(test_data / "rruff_calcite_R040070.txt")
    assert p.wavelength == CU_KALPHA and p.meta["format"] == "rruff"
    assert p.meta["wavelength_source"].startswith("default")
    assert p.x[0] == 5.0 and p.x[-1] == 60.0 and p.x.size == 5501
    # calcite (104), d = 3.0354 Å: Bragg's law at Cu Kα puts it at 29.42°
    assert peak_x(p) == pytest.approx(29.42, abs=0.08)
    explicit = load_pattern(test_data / "rruff_calcite_R040070.txt", wavelength=1.5406)
    assert explicit.wavelength == 1.5406 and explicit.meta["wavelength_source"] == "option"


def test_rruff_quartz(test_data: Path) -> None:
    p = load_pattern(test_data / "rruff_quartz_R040031.txt")
    # quartz (101), d = 3.343 Å, at 26.64° with Cu Kα
    assert peak_x(p) == pytest.approx(26.64, abs=0.08)


def test_file_wavelength_beats_default_and_the_option(tmp_path: Path) -> None:
    """A file's own wavelength describes its own x axis: it wins over --wavelength, with a note."""
    path = write(tmp_path / "r.txt", "##NAMES=X\n##WAVELENGTH=0.7093\n" + rows(sep=", "))
    assert load_pattern(path).wavelength == pytest.approx(0.7093)
    p = load_pattern(path, wavelength=0.561)
    assert p.wavelength == pytest.approx(0.7093) and p.meta["wavelength_source"] == "file"
    assert "0.7093" in p.meta["wavelength_note"] and "0.561" in p.meta["wavelength_note"]
    same = load_pattern(path, wavelength=0.7093)
    assert "wavelength_note" not in same.meta


def test_plv_and_step_scan(tmp_path: Path) -> None:
    plv = "inXitu Terra XRD/XRF. PLV file format Ver. 3.0\nSample= X\nK-Alpha 1= 1.78897\n"
    plv += "".join(f"Line   {i}\n" for i in range(4, 10)) + "Data\n" + rows()
    p = load_pattern(write(tmp_path / "a.plv", plv))
    assert p.wavelength == pytest.approx(1.78897) and peak_x(p) == pytest.approx(PEAK, abs=1e-3)

    counts = np.round(INTENSITY).astype(int)
    body = "\n".join(" ".join(f"{c:7d}" for c in counts[i : i + 10]) for i in range(0, 701, 10))
    dat = (
        "SampleIdent X\nAnode Cu    Alpha1  1.54056    Alpha2  1.54439    Ratio  0.50000\n"
        "   5.000   0.050  40.000    MeasureDateTime 20/12/1997   10:51\n" + body + "\n"
    )
    p = load_pattern(write(tmp_path / "b.dat", dat))
    assert p.meta["format"] == "step-scan"
    assert p.wavelength == pytest.approx((1.54056 + 0.5 * 1.54439) / 1.5)
    assert p.x == pytest.approx(TTH) and p.y == pytest.approx(counts)


def test_x_unit_override(tmp_path: Path) -> None:
    q = np.linspace(0.5, 5.0, 701)
    path = write(tmp_path / "q.xy", rows(q))
    assert load_pattern(path, x_unit="q").q == pytest.approx(q, rel=1e-5)
    assert load_pattern(path, x_unit="q_nm^-1").q == pytest.approx(q / 10, rel=1e-5)


def test_reads_big_files_whole(tmp_path: Path) -> None:
    x = np.linspace(
        1, 100, 200_000
    )  # reading speed is benchmarked in make bench, not asserted here
    path = write(tmp_path / "big.xy", "# 2th_deg I\n" + rows(x, np.sin(x) + 2))
    p = load_pattern(path, wavelength=1.0)
    assert p.x.size == 200_000 and p.x[-1] == pytest.approx(100.0)


def test_inputs_never_modified(tmp_path: Path) -> None:
    path = write(tmp_path / "a.xy", rows())
    path.chmod(0o444)
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    load_pattern(path, wavelength=1.0)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


# ---------------------------------------------------------------- pyFAI output


@pytest.fixture(scope="module")
def integrator():
    pytest.importorskip("pyFAI")
    from pyFAI.detectors import Detector
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    det = Detector(pixel1=1e-4, pixel2=1e-4, max_shape=(300, 300))
    return AzimuthalIntegrator(dist=0.1, poni1=0.015, poni2=0.015, detector=det, wavelength=0.7e-10)


@pytest.fixture(scope="module")
def ring_image(integrator) -> np.ndarray:
    tth = integrator.center_array(unit="2th_deg")
    return 50.0 + 1000.0 * np.exp(-0.5 * ((tth - 8.0) / 0.05) ** 2)


def test_pyfai_2th_and_q_read_back_the_same_q(tmp_path: Path, integrator, ring_image) -> None:
    expected_q = float(tth_to_q(8.0, 0.7))  # Bragg: Q = 4π sin θ / λ
    qs = {}
    for unit in ("2th_deg", "q_nm^-1", "q_A^-1"):
        path = tmp_path / f"ring_{unit.replace('^', '')}.dat"
        integrator.integrate1d(ring_image, 400, unit=unit, filename=str(path))
        p = load_pattern(path)
        assert p.unit == unit and p.wavelength == pytest.approx(0.7)
        assert p.meta["format"] == "pyfai" and p.meta["calibrated_geometry"] is True
        qs[unit] = p.q
        step = float(np.median(np.abs(np.diff(p.q))))
        assert p.q[np.argmax(p.y)] == pytest.approx(expected_q, abs=step)
    assert qs["2th_deg"][[0, -1]] == pytest.approx(qs["q_nm^-1"][[0, -1]], abs=2e-3)
    assert qs["q_A^-1"] == pytest.approx(qs["q_nm^-1"], rel=1e-5)


def test_pyfai_radius_untilted(tmp_path: Path, integrator, ring_image) -> None:
    path = tmp_path / "ring_r.dat"
    integrator.integrate1d(ring_image, 400, unit="r_mm", filename=str(path))
    p = load_pattern(path)
    assert p.unit == "2th_deg" and peak_x(p) == pytest.approx(8.0, abs=0.05)
    tilted = path.read_text().replace('"rot1": 0', '"rot1": 0.1')
    with pytest.raises(PatternError, match="detector radius"):
        load_pattern(write(tmp_path / "tilted.dat", tilted))


def test_pyfai_sigma_column_header(tmp_path: Path, integrator, ring_image) -> None:
    path = tmp_path / "ring_err.dat"
    integrator.integrate1d(
        ring_image, 400, unit="2th_deg", filename=str(path), error_model="poisson"
    )
    # some pyFAI versions write a broken column header with error bars: the unit must then be given
    try:
        p = load_pattern(path)
    except PatternError as exc:
        assert "--x-unit" in str(exc)
        p = load_pattern(path, x_unit="2th_deg")
    assert peak_x(p) == pytest.approx(8.0, abs=0.05)


def test_pyfai_xrdml(tmp_path: Path, integrator, ring_image) -> None:
    path = tmp_path / "ring.xrdml"
    integrator.integrate1d(ring_image, 400, unit="2th_deg", filename=str(path))
    p = load_pattern(path)
    assert p.meta["format"] == "xrdml" and p.wavelength == pytest.approx(0.7)
    assert peak_x(p) == pytest.approx(8.0, abs=0.05)


# ---------------------------------------------------------------- xrdml

XRDML = """<?xml version="1.0" encoding="UTF-8"?>
<xrdMeasurements xmlns="http://www.xrdml.com/XRDMeasurement/1.5" status="Completed">
  <sample type="To be analyzed"><id>s1</id></sample>
  <xrdMeasurement measurementType="Scan" status="Completed">
    <usedWavelength intended="{intended}">
      <kAlpha1 unit="Angstrom">1.5405980</kAlpha1>
      <kAlpha2 unit="Angstrom">1.5444260</kAlpha2>
      <kBeta unit="Angstrom">1.3922500</kBeta>
      <ratioKAlpha2KAlpha1>0.5000</ratioKAlpha2KAlpha1>
    </usedWavelength>
    <scan appendNumber="0" mode="Continuous" scanAxis="Gonio" status="Completed">
      <dataPoints>
        <positions axis="2Theta" unit="deg">{positions}</positions>
        <positions axis="Omega" unit="deg"><startPosition>2.5</startPosition>
          <endPosition>20.0</endPosition></positions>
        <commonCountingTime unit="seconds">1.0</commonCountingTime>
        <{tag} unit="counts">{counts}</{tag}>
      </dataPoints>
    </scan>
  </xrdMeasurement>
</xrdMeasurements>
"""


def xrdml(intended: str = "K-Alpha", listed: bool = False, tag: str = "intensities") -> str:
    if listed:
        positions = "<listPositions>" + " ".join(f"{v:.3f}" for v in TTH) + "</listPositions>"
    else:
        positions = "<startPosition>5.000</startPosition><endPosition>40.000</endPosition>"
    counts = " ".join(f"{v:.0f}" for v in INTENSITY)
    return XRDML.format(intended=intended, positions=positions, tag=tag, counts=counts)


@pytest.mark.parametrize(
    ("intended", "listed", "tag", "wavelength"),
    [
        ("K-Alpha", False, "intensities", (1.540598 + 0.5 * 1.544426) / 1.5),
        ("K-Alpha 1", True, "counts", 1.540598),
        ("K-Beta", False, "counts", 1.39225),
    ],
)
def test_xrdml(tmp_path: Path, intended: str, listed: bool, tag: str, wavelength: float) -> None:
    p = load_pattern(write(tmp_path / "scan.xrdml", xrdml(intended, listed, tag)))
    assert p.unit == "2th_deg" and p.wavelength == pytest.approx(wavelength)
    assert p.x == pytest.approx(TTH) and peak_x(p) == pytest.approx(PEAK, abs=1e-3)


# ---------------------------------------------------------------- NumPy


@pytest.mark.parametrize("transpose", [False, True])
def test_npy_orientations(tmp_path: Path, transpose: bool) -> None:
    arr = np.vstack([TTH, INTENSITY])
    np.save(tmp_path / "p.npy", arr.T if transpose else arr)
    p = load_pattern(tmp_path / "p.npy", wavelength=0.561)
    assert p.x == pytest.approx(TTH) and p.y == pytest.approx(INTENSITY)
    assert p.meta["x_unit_assumed"]


@pytest.mark.parametrize("layout", ["fortran", "big-endian float32"])
def test_npy_memory_layouts_and_dtypes_read_alike(tmp_path: Path, layout: str) -> None:
    arr = np.vstack([TTH, INTENSITY])
    stored = {
        "fortran": np.asfortranarray(arr),
        "big-endian float32": arr.astype(">f4"),
    }[layout]
    np.save(tmp_path / "p.npy", stored)
    p = load_pattern(tmp_path / "p.npy", wavelength=0.561)
    assert p.x == pytest.approx(stored[0], rel=1e-6) and p.y == pytest.approx(stored[1], rel=1e-6)
    p.y[0] = 1.0  # the arrays are the caller's to change


def test_npy_x_unit(tmp_path: Path) -> None:
    d = np.linspace(6.0, 1.0, 100)
    np.save(tmp_path / "d.npy", np.vstack([d, d**2]).astype(np.float32))
    p = load_pattern(tmp_path / "d.npy", x_unit="d")
    assert p.unit == "d_A" and p.q == pytest.approx(2 * np.pi / d, rel=1e-6)


def test_hdac_npy(test_data: Path) -> None:
    for name in ("masked/xy_bc_10.npy", "masked/xy_r_98.npy", "unmasked/xy_bc_10.npy"):
        p = load_pattern(test_data / "hdac" / name, wavelength=0.561)
        assert p.unit == "2th_deg" and p.x.size > 2000
        assert 0.0 <= p.x.min() < 5.0 and 24.0 < p.x.max() < 40.0
    with pytest.raises(PatternError, match="--wavelength"):
        load_pattern(test_data / "hdac" / "masked" / "xy_bc_10.npy")


def test_rhenium_peak_in_hdac(test_data: Path) -> None:
    # Re (101), a = 2.761 Å, c = 4.456 Å: d = 2.1058 Å, at 15.30° for λ = 0.561 Å
    p = load_pattern(test_data / "hdac" / "masked" / "xy_r_98.npy", wavelength=0.561)
    window = (p.x > 14.5) & (p.x < 16.0)
    assert p.x[window][np.argmax(p.y[window])] == pytest.approx(15.30, abs=0.05)
    assert q_to_tth(2 * np.pi / 2.1058, 0.561) == pytest.approx(15.30, abs=0.01)


# ---------------------------------------------------------------- bad input


def save_npy(path: Path, arr: np.ndarray, **kw) -> bytes:
    np.save(path, arr, **kw)
    return path.read_bytes()


BAD_TEXT = [
    ("empty.xy", b"", "empty file"),
    ("blank.xy", b"  \n\t\n", "empty file"),
    ("words.xy", b"intensity profile\nno numbers here\n", "no numeric data"),
    ("mixed.xy", (rows() + "12.0 abc\n" + rows(TTH + 50)).encode(), "non-numeric"),
    ("nan.xy", rows(y=np.where(TTH > 20, np.nan, INTENSITY)).encode(), "NaN"),
    ("inf.csv", rows(y=np.where(TTH > 20, np.inf, INTENSITY), sep=",").encode(), "infinite"),
    ("order.xy", rows(np.r_[TTH[:300], TTH[200:601]]).encode(), "non-monotonic"),
    ("dup.xy", rows(np.r_[TTH[:300], TTH[299:700]]).encode(), "duplicate"),
    ("zero.xy", rows(y=0 * TTH).encode(), "constant"),
    ("short.xy", rows(TTH[:5], INTENSITY[:5]).encode(), "data points"),
    ("unit.xy", ("#chi_deg  I\n" + rows()).encode(), "unknown x unit"),
    ("bareq.csv", ("q,I\n" + rows(sep=",")).encode(), "unknown x unit"),
    ("wide.xy", ("# 2th_deg I\n# Wavelength: 1 A\n" + rows(TTH * 10)).encode(), "beyond 180"),
    ("nowave.xy", rows().encode(), "give --wavelength"),
    ("negd.csv", ("d,I\n" + rows(TTH - 20, sep=",")).encode(), "positive"),
    ("junk.xy", bytes(range(256)) * 8, "binary"),
    ("junk.npy", b"junk\n1 2\n", "not a NumPy .npy"),
    ("raw.npy", pickle.dumps([1.0, 2.0]), "pickled"),
    ("bad.xrdml", b"<xrdMeasurements><xrdMeasurement>", "unreadable"),
    ("other.xml", b"<?xml version='1.0'?><html><body>1 2</body></html>", "xrdMeasurement"),
    ("nodata.xrdml", xrdml().replace("intensities", "other").encode(), "intensities or counts"),
    (
        "bomb.xrdml",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>',
        "unreadable",
    ),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_TEXT)
def test_bad_files(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = write(tmp_path / name, content)
    assert_bad(path, message)


def assert_bad(path: Path, message: str, **kw) -> None:
    with pytest.raises(PatternError, match=message) as info:
        load_pattern(path, **kw)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and "\n" not in text


def test_bad_npy(tmp_path: Path) -> None:
    cases = {
        "object.npy": (np.array([TTH, None], dtype=object), "pickled"),
        "one_d.npy": (INTENSITY, "1-D array"),
        "three_d.npy": (np.ones((2, 20, 2)), "3-D array"),
        "zeros.npy": (np.vstack([TTH, 0 * TTH]), "constant"),
        "complex.npy": (np.vstack([TTH, INTENSITY]).astype(complex), "dtype"),
        "square.npy": (np.ones((5, 5)), "shape"),
        "image.npy": (np.ones((64, 80)), "2D image of 64×80 pixels.*--poni"),
        "strings.npy": (np.array([["1", "2"]] * 20), "dtype"),
    }
    for name, (arr, message) in cases.items():
        save_npy(tmp_path / name, arr, allow_pickle=True)
        assert_bad(tmp_path / name, message, wavelength=0.561)
    data = save_npy(tmp_path / "full.npy", np.vstack([TTH, INTENSITY]))
    assert_bad(write(tmp_path / "cut.npy", data[:-100]), "truncated", wavelength=0.561)
    np.savez(tmp_path / "arch.npz", a=np.vstack([TTH, INTENSITY]))
    assert_bad(tmp_path / "arch.npz", "npz")


def test_batch_goes_on_after_bad_npy(tmp_path: Path) -> None:
    save_npy(tmp_path / "a_good.npy", np.vstack([TTH, INTENSITY]))
    save_npy(tmp_path / "b_pickled.npy", np.array([TTH, None], dtype=object), allow_pickle=True)
    save_npy(tmp_path / "c_flat.npy", INTENSITY)
    save_npy(tmp_path / "d_zero.npy", np.vstack([TTH, 0 * TTH]))
    save_npy(tmp_path / "e_good.npy", np.vstack([TTH, INTENSITY]).T)
    files, errors = collect_inputs([tmp_path])
    assert not errors and len(files) == 5
    ok, failed = [], []
    for f in files:
        try:
            ok.append(load_pattern(f, wavelength=0.561))
        except PatternError as exc:
            failed.append(str(exc))
    assert [Path(p.source).name for p in ok] == ["a_good.npy", "e_good.npy"]
    assert len(failed) == 3 and all(str(tmp_path) in m for m in failed)


def test_unreadable_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_bad(tmp_path, "is a directory")
    assert_bad(tmp_path / "missing.xy", "no such file")
    path = write(tmp_path / "locked.xy", rows())

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)
    assert_bad(path, "permission denied")


def test_bad_arguments(tmp_path: Path) -> None:
    path = write(tmp_path / "a.xy", rows())
    assert_bad(path, "unknown x unit", x_unit="furlongs")
    assert_bad(path, "implausible wavelength", wavelength=-1.0)


# ---------------------------------------------------------------- collect_inputs


def test_collect_inputs(tmp_path: Path) -> None:
    (tmp_path / "run" / "sub").mkdir(parents=True)
    (tmp_path / "run" / ".hidden").mkdir()
    for name in (
        "run/b.xy",
        "run/a.chi",
        "run/sub/c.xrdml",
        "run/.hidden/h.xy",
        "run/notes.md",
        "run/scan.csv",
        "other.weird",
    ):
        write(tmp_path / name, rows())
    write(tmp_path / "run" / "labels.csv", "file,calcite\nb.xy,1\n")
    files, errors = collect_inputs(
        [
            tmp_path / "run",
            str(tmp_path / "run" / "*.xy"),
            tmp_path / "other.weird",
            tmp_path / "nothing.xy",
            str(tmp_path / "*.nope"),
        ]
    )
    names = [f.relative_to(tmp_path).as_posix() for f in files]
    assert names == ["run/a.chi", "run/b.xy", "run/scan.csv", "run/sub/c.xrdml", "other.weird"]
    assert [(Path(arg).name, type(e)) for arg, e in errors] == [
        ("nothing.xy", PatternError),
        ("*.nope", PatternError),
    ]
    assert "no such file" in str(errors[0][1]) and "matches" in str(errors[1][1])


def test_collect_empty_folder_and_recursive_glob(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "deep").mkdir()
    write(tmp_path / "deep" / "x.npy", b"")
    files, errors = collect_inputs([tmp_path / "empty", str(tmp_path / "**" / "*.npy")])
    assert [f.name for f in files] == ["x.npy"]
    assert len(errors) == 1 and "folder holds no" in str(errors[0][1])
    assert ".npy" in PATTERN_EXTENSIONS


# ---------------------------------------------------------------- real files in ../shared


def test_shared_real_files(shared_data: Path) -> None:
    real = shared_data / "real"
    expected = {
        "Calcite__CalciteP-film.plv": (1.78897, 949),
        "Dolomite__Dolomite_R050241-film.plv": (1.78897, 949),
        "Gypsum__GypsumP-film.plv": (1.78897, 949),
        "CeO2__CeO2_Pilatus1M.xy": (0.4066, 1512),
        "Fluorite-Zincite-Corundum__cpd-1a.dat": ((1.54056 + 0.5 * 1.54439) / 1.5, 7251),
    }
    for name, (wavelength, n) in expected.items():
        p = load_pattern(real / name)
        assert p.unit == "2th_deg" and p.wavelength == pytest.approx(wavelength)
        assert p.x.size == n, name
    calcite = load_pattern(real / "Calcite__CalciteP-film.plv")
    # calcite (104), d = 3.0354 Å, at 34.2° with Co Kα1
    window = (calcite.x > 32) & (calcite.x < 36)
    top = calcite.x[window][np.argmax(calcite.y[window])]
    assert top == pytest.approx(float(q_to_tth(2 * np.pi / 3.0354, 1.78897)), abs=0.15)


def test_shared_rruff_and_hdac(shared_data: Path) -> None:
    for f in sorted((shared_data / "rruff").glob("*Powder*.txt")):
        p = load_pattern(f)
        assert p.wavelength == CU_KALPHA and p.x[0] == 5.0 and p.x[-1] == 90.0
    files, errors = collect_inputs([shared_data / "hdac"])
    assert len(files) == 58 and not errors  # the labels CSVs are skipped
    for f in files:
        assert load_pattern(f, wavelength=0.561).unit == "2th_deg"


# ---------------------------------------------------------------- fuzzing

FUZZ_EXTS = sorted(PATTERN_EXTENSIONS) + [".bin"]


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def load_or_error(path: Path, **kw) -> None:
    """Either a valid Pattern or a one-line PatternError naming the file: nothing else."""
    try:
        p = load_pattern(path, **kw)
    except PatternError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
        return
    assert np.isfinite(p.q).all() and p.x.size >= 10


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(data=st.binary(max_size=2000), ext=st.sampled_from(FUZZ_EXTS))
def test_fuzz_arbitrary_bytes(fuzz_dir: Path, data: bytes, ext: str) -> None:
    load_or_error(write(fuzz_dir / f"bytes{ext}", data))


@FUZZ
@given(data=st.binary(max_size=400))
def test_fuzz_npy_header(fuzz_dir: Path, data: bytes) -> None:
    load_or_error(write(fuzz_dir / "magic.npy", b"\x93NUMPY" + data), wavelength=1.0)


@FUZZ
@given(
    arr=hnp.arrays(
        st.sampled_from([np.float64, np.float32, np.int16, np.uint8]),
        hnp.array_shapes(min_dims=1, max_dims=3, max_side=24),
    )
)
def test_fuzz_npy_arrays(fuzz_dir: Path, arr: np.ndarray) -> None:
    np.save(fuzz_dir / "arr.npy", arr)
    load_or_error(fuzz_dir / "arr.npy", wavelength=1.0)


HEADERS = [
    "",
    "# 2th_deg  I\n",
    '# {\n#   "wavelength": 7e-11,\n#   "dist": 0.1\n# }\n#q_nm^-1  I\n',
    "##NAMES=Calcite\n##RRUFFID=R1\n",
    "scan.edf\n2-Theta Angle (Degrees)\nIntensity\n    40\n",
    "Alpha1 1.54056 Alpha2 1.54439 Ratio 0.5\n   5.000   0.050  6.950  x\n",
]
EDITS = st.lists(
    st.tuples(
        st.integers(0, 2000),
        st.integers(0, 3),
        st.text("0123456789.,;:-+eE \t\n\r#nainfq_dA=\x00é", max_size=4),
    ),
    max_size=8,
)


def mangle(text: str, edits: list[tuple[int, int, str]]) -> str:
    for pos, cut, insert in edits:
        pos = pos % (len(text) + 1)
        text = text[:pos] + insert + text[pos + cut :]
    return text


@FUZZ
@given(
    header=st.sampled_from(HEADERS),
    sep=st.sampled_from([" ", ", ", ";", "\t"]),
    ext=st.sampled_from([".xy", ".csv", ".txt", ".chi", ".dat", ".xye"]),
    edits=EDITS,
    wavelength=st.sampled_from([None, 1.5406]),
)
def test_fuzz_mangled_text(fuzz_dir: Path, header, sep, ext, edits, wavelength) -> None:
    body = rows(TTH[:40], INTENSITY[:40], sep)
    if "Alpha1" in header:
        body = "\n".join(
            " ".join(f"{v:.0f}" for v in INTENSITY[i : i + 10]) for i in range(0, 40, 10)
        )
    text = mangle(header + body, edits)
    load_or_error(write(fuzz_dir / f"text{ext}", text.encode("utf-8")), wavelength=wavelength)


@FUZZ
@given(edits=EDITS)
def test_fuzz_mangled_xrdml(fuzz_dir: Path, edits) -> None:
    load_or_error(write(fuzz_dir / "m.xrdml", mangle(xrdml(), edits)))


PEAK_TABLE = """      Dolomite
Diffraction data computed using the structure from the paper listed below,
      CELL PARAMETERS:   4.8079  4.8079 16.0091   90.000   90.000  120.000
            X-RAY WAVELENGTH:     1.541838
               2-THETA      INTENSITY    D-SPACING   H   K   L
                30.99        100.00        2.8854    1   0   4
                41.19         21.42        2.1918    2  -1   3
                41.19          7.25        2.1918    1   1   3
                50.61         17.84        1.8036    0   1   8
================================================================================
       XPOW Copyright 1993
"""


def test_a_computed_peak_table_reads_as_the_profile_it_stands_for(tmp_path: Path) -> None:
    """RRUFF's patterns computed from a structure are peak tables (coincident reflections repeat a
    2θ): read as Gaussian lines of a lab width at the sticks, coincident sticks added."""
    f = tmp_path / "R040030_CIF.txt"
    f.write_text(PEAK_TABLE)
    p = load_pattern(f)
    assert p.meta["format"] == "peak-table" and p.meta["sticks"] == 4
    assert p.wavelength == pytest.approx(1.541838) and p.meta["wavelength_source"] == "file"
    assert np.all(np.diff(p.x) > 0)
    for tth, height in ((30.99, 100.0), (41.19, 28.67), (50.61, 17.84)):
        near = np.abs(p.x - tth) < 0.02
        assert p.y[near].max() == pytest.approx(height, rel=0.02)
    assert p.y[np.abs(p.x - 36.0) < 1.0].max() < 1e-6  # nothing between the lines


def test_only_an_integration_of_a_calibrated_frame_is_calibrated(tmp_path: Path) -> None:
    """pyFAI's older header (the detector distance on its own line) marks a calibrated integration
    as the JSON one does; a plain 2θ file, or a pyFAI header without the geometry, does not."""
    rows = "# 2th_deg  I\n" + "\n".join(f"{5 + 0.01 * i:.3f} {100 + i % 7}" for i in range(400))
    old = "# == pyFAI calibration ==\n# Distance Sample to Detector: 0.2086 m\n# Wavelength: 4.066e-11 m\n"
    assert load_pattern(write(tmp_path / "old.xy", old + rows)).meta["calibrated_geometry"] is True
    bare = '# {"wavelength": 7.1e-11, "poni_version": 2.1}\n'
    for name, text in (("plain.xy", rows), ("bare.xy", bare + rows)):
        plain = load_pattern(write(tmp_path / name, text), wavelength=0.71)
        assert "calibrated_geometry" not in plain.meta
