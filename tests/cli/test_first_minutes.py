"""The first ten minutes (issue 16): --version, predict --json, flags that read as flags in --help,
file names on one line of the summary table, and ``xrdmtl examples``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from clitools import WAVELENGTH, digest, invoke
from typer.testing import CliRunner

from xrdmtl import __version__
from xrdmtl.cli import app
from xrdmtl.inference.results import Flag
from xrdmtl.io.readers import load_pattern


def test_version() -> None:
    res = invoke("--version")
    assert res.exit_code == 0 and res.stdout.strip() == f"xrdmtl {__version__}"


def test_predict_json(examples: Path) -> None:
    files = sorted(examples.glob("*bc_10.npy"))
    res = invoke(
        "predict",
        *files,
        examples / "nope.xy",
        "--wavelength",
        WAVELENGTH,
        "--json",
        "--workers",
        "1",
    )
    assert res.exit_code == 1, res.output  # one input failed
    doc = json.loads(res.stdout)
    assert (
        doc["phases"] == ["bastnaesite", "calcite", "rhenium"]
        and doc["n"] == 3
        and doc["failed"] == 1
    )
    good = [p for p in doc["predictions"] if not p["error"]]
    assert len(good) == 2
    for p in good:
        assert p["found"] == ["bastnaesite", "calcite"] and p["calls"]["calcite"] == 1
        assert p["wavelength"] == 0.561 and p["wavelength_source"] == "option"
        assert p["x_unit"] == "2th_deg (assumed)"
        assert p["matched_q"]["calcite"]  # the peaks behind the call
        assert set(p["flags"]) <= {f.value for f in Flag}  # typed, beside the warning text
        assert bool(p["flags"]) == bool(p["warning"])
    assert "nope.xy" in res.stderr


COMMANDS = [
    [],
    ["predict"],
    ["evaluate"],
    ["audit"],
    ["train"],
    ["finetune"],
    ["crossval"],
    ["phases"],
    ["simulate", "frames"],
    ["simulate", "patterns"],
    ["experiment"],
    ["examples"],
]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "xrdmtl")
def test_flags_read_as_flags_in_help(cmd: list[str]) -> None:
    res = CliRunner().invoke(app, [*cmd, "--help"], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert "<bool>" not in res.output
    assert "--help" in res.output


def test_file_names_keep_one_line_at_80_columns(examples: Path) -> None:
    deep = (
        examples
        / "a_rather_long_folder_name"
        / "with_more_levels"
        / "and_a_measurement_campaign_2026"
    )
    deep.mkdir(parents=True)
    name = "hdac_sample_run_0042_frame_integrated.npy"
    (deep / name).write_bytes((examples / "hdac_unmasked_xy_n_2.npy").read_bytes())
    out = examples / "p.csv"
    res = CliRunner().invoke(
        app,
        [
            "predict",
            str(deep / name),
            str(examples / "hdac_unmasked_xy_c_17.npy"),
            "--wavelength",
            WAVELENGTH,
            "--out",
            str(out),
            "--workers",
            "1",
        ],
        env={"COLUMNS": "80"},
    )
    assert res.exit_code == 0, res.output
    table = [line for line in res.stdout.splitlines() if line.startswith(("│", "┃"))]
    assert all(len(line) <= 80 for line in res.stdout.splitlines())
    rows = [line for line in table if re.search(r"\d\.\d\d", line) and line.split("│")[1].strip()]
    assert (
        len(rows) == 2
    )  # one line per file: no folded names (a long warning may wrap in its own column)
    assert any("integrated.npy" in line for line in rows) and any(
        "c_17.npy" in line for line in rows
    )
    assert name in out.read_text()  # the CSV keeps the full path


def test_examples_command(tmp_path: Path) -> None:
    folder = tmp_path / "examples"
    res = invoke("examples", folder)
    assert res.exit_code == 0, res.output
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert "labels.csv" in files and sum(f.endswith(".npy") and "/" not in f for f in files) == 6
    before = {f: digest(folder / f) for f in files}
    again = invoke("examples", folder)
    assert again.exit_code == 2 and "already holds" in again.stderr
    assert {f: digest(folder / f) for f in files} == before
    run = invoke("predict", folder, "--wavelength", WAVELENGTH, "--workers", "1")
    assert run.exit_code == 0, run.output


def test_save_integrated_header_says_how_it_was_made(frames_run: Path, tmp_path: Path) -> None:
    import json as _json

    out = tmp_path / "integrated"
    res = invoke(
        "predict",
        frames_run / "frames" / "frame_00000.edf",
        "--poni",
        frames_run / "geometry.poni",
        "--mask",
        "auto",
        "--save-integrated",
        out,
        "--workers",
        "1",
    )
    assert res.exit_code == 0, res.output
    head = [
        line for line in (out / "frame_00000.xy").read_text().splitlines() if line.startswith("#")
    ]
    (line,) = [h for h in head if h.startswith("# xrdmtl {")]
    prov = _json.loads(line[len("# xrdmtl ") :])
    assert (
        prov["poni"].endswith("geometry.poni")
        and prov["mask"] == "auto"
        and prov["wavelength_A"] == 0.561
    )
    assert prov["masked_pixels"] is not None
    assert load_pattern(out / "frame_00000.xy").meta["calibrated_geometry"] is True
    again = invoke("predict", out, "--workers", "1")  # and it reads back, with its own wavelength
    assert again.exit_code == 0, again.output
    assert ",0.561,file,2th_deg" in again.stdout


def test_save_mask(frames_run: Path, tmp_path: Path) -> None:
    import fabio

    frame = frames_run / "frames" / "frame_00000.edf"
    poni = frames_run / "geometry.poni"
    masks, integrated = tmp_path / "masks", tmp_path / "integrated"
    res = invoke(
        "predict",
        frame,
        "--poni",
        poni,
        "--mask",
        "auto",
        "--save-mask",
        masks,
        "--save-integrated",
        integrated,
        "--workers",
        "1",
    )
    assert res.exit_code == 0, res.output
    saved = masks / "frame_00000.edf"
    with fabio.open(str(saved)) as img:
        mask = img.data
    assert (
        mask.shape == (768, 768) and 0 < int(mask.sum()) < mask.size
    )  # some spots, not everything
    assert (
        str(saved) in (integrated / "frame_00000.xy").read_text()
    )  # the integrated header names it
    reuse = invoke(
        "predict", frame, "--poni", poni, "--mask", saved, "--workers", "1"
    )  # usable as --mask FILE
    assert reuse.exit_code == 0, reuse.output
    before = digest(saved)
    again = invoke(
        "predict", frame, "--poni", poni, "--mask", "auto", "--save-mask", masks, "--workers", "1"
    )
    assert again.exit_code == 2 and "--save-mask" in again.stderr and digest(saved) == before
    wrong = invoke(
        "predict", frame, "--poni", poni, "--save-mask", tmp_path / "m2", "--workers", "1"
    )
    assert wrong.exit_code == 2 and "--mask auto" in wrong.stderr


def test_audit_table_keeps_one_line_per_file_at_80_columns(examples: Path) -> None:
    res = CliRunner().invoke(
        app,
        [
            "audit",
            "--labels",
            str(examples / "labels.csv"),
            "--wavelength",
            WAVELENGTH,
            "--no-model",
        ],
        env={"COLUMNS": "80"},
    )
    assert res.exit_code == 0, res.output
    rows = [line for line in res.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 6 and all(".npy" in line for line in rows)  # six files, six lines
    assert all(len(line) <= 80 for line in res.stdout.splitlines() if line[:1] in "│┃┏┡└")
