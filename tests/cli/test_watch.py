"""``xrdmtl watch`` as a user runs it: killed and restarted it loses no row and repeats none;
Ctrl-C stops it cleanly (exit code 1 when a file failed); ``timeline`` draws the run."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from clitools import invoke
from toymodels import toy_model
from watchrun import READING, WatchProcess, csv_rows, land, pattern_bytes, wait_rows


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return toy_model(tmp_path_factory.mktemp("model") / "toy")


@pytest.mark.slow
def test_kill_restart_and_ctrl_c(model: Path, tmp_path: Path) -> None:
    folder, out = tmp_path / "run", tmp_path / "run.csv"
    folder.mkdir()
    for k in range(4):
        land(folder / f"f_{k}.xy", pattern_bytes(k))
    args = (folder, "--model", model, "--out", out, "--settle", "0.2", *READING)
    first = WatchProcess(*args)
    try:
        wait_rows(out, 1)
        first.signal(signal.SIGKILL)  # killed wherever it is
    finally:
        first.stop()
    assert out.read_bytes().endswith(b"\n") or b"\n" in out.read_bytes()
    for k in range(4, 6):
        land(folder / f"f_{k}.xy", pattern_bytes(k))
    land(folder / "f_6.xy", b"1 2\n3\n")  # a bad file: its row says why, the exit code is 1
    second = WatchProcess(*args)
    try:
        wait_rows(out, 7)
        code, err = second.signal(signal.SIGINT)
    finally:
        second.stop()
    assert code == 1 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("stopped (Ctrl-C): 7 rows") and "1 file(s) failed" in last, err
    rows = csv_rows(out)
    assert [Path(r[0]).name for r in rows] == [f"f_{k}.xy" for k in range(7)]
    assert [bool(r[8]) for r in rows] == [False] * 6 + [True]  # the error column


def test_bad_options_are_one_line(model: Path, tmp_path: Path) -> None:
    missing = invoke("watch", tmp_path / "nope", "--model", model)
    assert missing.exit_code == 2 and "no such folder" in missing.stderr
    bad = invoke(
        "watch",
        tmp_path,
        "--model",
        model,
        "--out",
        tmp_path / "r.csv",
        "--serve",
        "localhost:http",
    )
    assert bad.exit_code == 2 and "--serve takes [HOST:]PORT" in bad.stderr
    assert not (tmp_path / "r.csv").exists()  # refused before any work


def test_timeline_png_and_html(tmp_path: Path) -> None:
    run = tmp_path / "run.csv"
    run.write_text(
        "file,p_calcite,p_rhenium,calcite,rhenium,warning,error,calcite_a,calcite_c\n"
        "a.xy,0.9,0.1,1,0,,,4.99,17.06\n"
        "b.xy,,,,,,cannot read,,\n"
        "c.xy,0.8,0.7,1,1,uncertain,,4.98,17.02\n"
    )
    png = invoke("timeline", run, "--out", tmp_path / "t.png")
    assert png.exit_code == 0, png.stderr
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = invoke("timeline", run, "--out", tmp_path / "t.html")
    assert html.exit_code == 0, html.stderr
    page = (tmp_path / "t.html").read_text()
    assert '"calcite_a"' in page and "cannot read" in page and "<script src" not in page
    bad = invoke("timeline", tmp_path / "t.png", "--out", tmp_path / "u.png")
    assert bad.exit_code == 2 and "not a predictions CSV" in bad.stderr
