"""No silent wrong answers (issue 16): broken frames are errors, the file's own wavelength wins,
the CSV says which wavelength and x unit were assumed, and a model.json out of range is refused."""

from __future__ import annotations

import csv
import io
import json
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from xrdmtl.cli import app

FIXED = [
    "file",
    "p_bastnaesite",
    "p_calcite",
    "p_rhenium",
    "bastnaesite",
    "calcite",
    "rhenium",
    "warning",
    "error",
]
PROVENANCE = ["wavelength", "wavelength_source", "x_unit"]
CELLS = [  # the refined cells of the physics check, on by default
    f"{p}_{f}" for p in ("bastnaesite", "calcite", "rhenium") for f in ("a", "a_err", "c", "c_err")
]


def _run(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "100"})


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _examples() -> Path:
    return Path(str(resources.files("xrdmtl") / "data" / "examples"))


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "run"
    res = _run("simulate", "frames", "--n", "1", "--out", out, "--seed", "1")
    assert res.exit_code == 0, res.output
    return out


def test_truncated_and_header_only_edf_are_errors(frames: Path, tmp_path: Path) -> None:
    data = (frames / "frames" / "frame_00000.edf").read_bytes()
    end = data.index(b"}") + 1
    (tmp_path / "third.edf").write_bytes(data[: len(data) // 3])
    (tmp_path / "header.edf").write_bytes(data[: end + 1])
    res = _run(
        "predict",
        tmp_path / "third.edf",
        tmp_path / "header.edf",
        frames / "frames" / "frame_00000.edf",
        "--poni",
        frames / "geometry.poni",
        "--workers",
        "1",
    )
    assert res.exit_code == 1, res.output
    rows = {Path(r["file"]).name: r for r in _rows(res.stdout)}
    for name in ("third.edf", "header.edf"):
        assert rows[name]["error"] and rows[name]["p_rhenium"] == "", rows[name]
        assert "incomplete" in rows[name]["error"] or "truncated" in rows[name]["error"], rows[name]
    assert not rows["frame_00000.edf"]["error"]
    # fabio's own log line does not reach the terminal: the error lines say it
    assert all(
        line.startswith("error:") for line in res.stderr.splitlines() if "Data stream" in line
    )


def _pyfai_text(tth: np.ndarray, y: np.ndarray, wavelength_m: float) -> str:
    head = [
        "# {",
        f'#     "wavelength": {wavelength_m:.6e},',
        '#     "poni_version": 2.1',
        "# }",
        "#  2th_deg             I",
    ]
    return "\n".join(head + [f"{a:.6f} {b:.4f}" for a, b in zip(tth, y, strict=True)]) + "\n"


def test_file_wavelength_wins_over_the_option_with_a_note(tmp_path: Path) -> None:
    xy = np.load(_examples() / "hdac_unmasked_xy_bc_10.npy")
    tth, y = (xy[0], xy[1]) if xy.shape[0] == 2 else (xy[:, 0], xy[:, 1])
    keep = tth > 2
    (tmp_path / "pyfai.xy").write_text(_pyfai_text(tth[keep], y[keep], 0.561e-10))
    (tmp_path / "other.xy").write_text(_pyfai_text(tth[keep], y[keep], 0.4066e-10))
    shutil.copy(_examples() / "hdac_unmasked_xy_bc_10.npy", tmp_path / "plain.npy")
    res = _run(
        "predict",
        tmp_path / "pyfai.xy",
        tmp_path / "other.xy",
        tmp_path / "plain.npy",
        "--wavelength",
        "0.561",
        "--workers",
        "1",
    )
    assert res.stdout.splitlines()[0].split(",") == FIXED + PROVENANCE + CELLS
    rows = {Path(r["file"]).name: r for r in _rows(res.stdout)}
    assert (
        rows["pyfai.xy"]["wavelength"] == "0.561"
        and rows["pyfai.xy"]["wavelength_source"] == "file"
    )
    assert "--wavelength" not in rows["pyfai.xy"]["warning"]  # they agree: nothing to say
    other = rows["other.xy"]
    assert other["wavelength"] == "0.4066" and other["wavelength_source"] == "file"
    assert "0.4066" in other["warning"] and "0.561" in other["warning"]
    assert (
        rows["plain.npy"]["wavelength"] == "0.561"
        and rows["plain.npy"]["wavelength_source"] == "option"
    )
    assert rows["plain.npy"]["x_unit"].startswith("2th_deg")
    assert rows["pyfai.xy"]["x_unit"] == "2th_deg"
    # the file's own wavelength gives the same answer as the right --wavelength would
    assert rows["pyfai.xy"]["bastnaesite"] == rows["plain.npy"]["bastnaesite"] == "1"


def test_rruff_default_wavelength_is_named(test_data: Path) -> None:
    res = _run("predict", test_data / "rruff_calcite_R040070.txt", "--workers", "1")
    (row,) = _rows(res.stdout)
    assert row["wavelength_source"] == "default" and row["wavelength"] == "1.5418", row


def test_headerless_q_file_says_what_was_assumed(tmp_path: Path) -> None:
    xy = np.load(_examples() / "hdac_unmasked_xy_bc_10.npy")
    tth, y = (xy[0], xy[1]) if xy.shape[0] == 2 else (xy[:, 0], xy[:, 1])
    keep = tth > 2
    q_nm = 10 * 4 * np.pi * np.sin(np.radians(tth[keep] / 2)) / 0.561
    np.savetxt(tmp_path / "q.xy", np.column_stack([q_nm, y[keep]]), fmt="%.6f")
    res = _run("predict", tmp_path / "q.xy", "--wavelength", "0.561", "--workers", "1")
    (row,) = _rows(res.stdout)
    assert row["x_unit"] == "2th_deg (assumed)", row
    assert (
        "looks like q_nm^-1" in row["warning"] + row["error"]
        and "--x-unit q_nm^-1" in row["warning"] + row["error"]
    )
    np.savetxt(tmp_path / "qa.xy", np.column_stack([q_nm / 10, y[keep]]), fmt="%.6f")  # and in Å⁻¹
    (row,) = _rows(
        _run("predict", tmp_path / "qa.xy", "--wavelength", "0.561", "--workers", "1").stdout
    )
    assert "looks like q_A^-1" in row["warning"] + row["error"], row
    good = _run("predict", tmp_path / "q.xy", "--x-unit", "q_nm^-1", "--workers", "1")
    assert good.exit_code == 0, good.output
    (row,) = _rows(good.stdout)
    assert row["x_unit"] == "q_nm^-1" and row["bastnaesite"] == "1" and row["calcite"] == "1", row
    assert "--x-unit" not in row["warning"]


def test_headerless_2theta_patterns_get_no_unit_doubt(tmp_path: Path) -> None:
    """The paper's .npy patterns name no unit and are 2θ: none of them is doubted."""
    res = _run("predict", _examples(), "--wavelength", "0.561", "--workers", "1")
    rows = _rows(res.stdout)
    assert len(rows) >= 30 and all(r["x_unit"] == "2th_deg (assumed)" for r in rows)
    assert not [r["file"] for r in rows if "x-unit" in r["warning"] + r["error"]]


def _model(tmp_path: Path, edit) -> Path:
    src = Path(str(resources.files("xrdmtl") / "data" / "models" / "default"))
    dst = tmp_path / "model"
    shutil.copytree(src, dst)
    meta = json.loads((dst / "model.json").read_text())
    edit(meta)
    (dst / "model.json").write_text(json.dumps(meta))
    return dst


BAD_META = {
    "thresholds out of [0, 1]": (lambda m: m.update(thresholds=[1.5, 0.5, -0.2]), "thresholds"),
    "thresholds not numbers": (lambda m: m.update(thresholds=["a", "b", "c"]), "thresholds"),
    "thresholds NaN": (lambda m: m.update(thresholds=[0.5, float("nan"), 0.5]), "thresholds"),
    "temperature zero": (lambda m: m["calibration"].update(temperature=[0, 1, 1]), "temperature"),
    "temperature a string": (lambda m: m["calibration"].update(temperature="hot"), "temperature"),
    "calibration a list": (lambda m: m.update(calibration=[1, 2]), "calibration"),
    "grid backwards": (lambda m: m.update(grid={"q_min": 5, "q_max": 1, "n": 2048}), "grid"),
    "grid n negative": (lambda m: m.update(grid={"q_min": 0.8, "q_max": 5.0, "n": -3}), "grid"),
    "grid n a string": (lambda m: m.update(grid={"q_min": 0.8, "q_max": 5.0, "n": "x"}), "grid"),
    "grid not a dict": (lambda m: m.update(grid=[0.8, 5.0]), "grid"),
    "preprocessing a string": (lambda m: m.update(preprocessing="v1"), "preprocessing"),
    "phases duplicated": (lambda m: m.update(phases=["calcite", "calcite", "rhenium"]), "phases"),
}


@pytest.mark.parametrize("case", sorted(BAD_META))
def test_bad_model_json_is_a_model_error(tmp_path: Path, case: str) -> None:
    edit, word = BAD_META[case]
    model = _model(tmp_path, edit)
    res = _run(
        "predict",
        _examples() / "hdac_unmasked_xy_n_2.npy",
        "--wavelength",
        "0.561",
        "--model",
        model,
        "--workers",
        "1",
    )
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "model.json" in lines[0] and word in lines[0], res.stderr


def test_unit_doubt_is_a_flag_and_the_pattern_is_left_alone(tmp_path: Path) -> None:
    """The API says the same as the CSV, typed (``Flag.X_UNIT``), and writes nothing into the
    caller's pattern."""
    from xrdmtl import Flag, Predictor, load_pattern
    from xrdmtl.io.writers import csv_header

    xy = np.load(_examples() / "hdac_unmasked_xy_bc_10.npy")
    tth, y = (xy[0], xy[1]) if xy.shape[0] == 2 else (xy[:, 0], xy[:, 1])
    keep = tth > 2
    q_nm = 10 * 4 * np.pi * np.sin(np.radians(tth[keep] / 2)) / 0.561
    np.savetxt(tmp_path / "q.xy", np.column_stack([q_nm, y[keep]]), fmt="%.6f")
    pattern = load_pattern(tmp_path / "q.xy", wavelength=0.561)
    before = dict(pattern.meta)
    (pred,) = Predictor().predict_patterns([pattern])
    assert pattern.meta == before
    assert Flag.X_UNIT in pred.flags and "looks like q_nm^-1" in pred.warning, pred
    row = dict(zip(csv_header(["calcite"]), pred.row(["calcite"]), strict=True))
    assert pred.to_dict()["flags"][0] == "x_unit" and row["warning"] == pred.warning
