"""``watch``: files written into a folder while it runs are each predicted once, in order, never
half-written; a bad file gets its error; a killed run resumes without repeats or losses."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from toymodels import toy_model
from watchrun import csv_rows as rows
from watchrun import pattern_bytes

from xrdmtl.inference.predictor import Predictor
from xrdmtl.inference.watch import WatchSettings, natural_key, watch
from xrdmtl.io.read import ReadOptions
from xrdmtl.io.runlog import RunLog
from xrdmtl.io.writers import csv_header

OPTIONS = ReadOptions(wavelength=0.561, x_unit="2th_deg")
SETTINGS = WatchSettings(settle=0.3, hold=5.0)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    return Predictor(toy_model(tmp_path_factory.mktemp("model") / "toy"))


class Running:
    """``watch`` in a thread until stopped."""

    def __init__(self, predictor: Predictor, folder: Path, out: Path) -> None:
        self.log = RunLog(out, csv_header(predictor.phases))
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=watch, args=(predictor, folder, self.log, OPTIONS, SETTINGS, self.stop)
        )
        self.thread.start()

    def wait_rows(self, n: int, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while self.log.n_rows < n and time.monotonic() < end:
            time.sleep(0.05)
        assert self.log.n_rows >= n, f"{self.log.n_rows} rows after {timeout} s, expected {n}"

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


def write_slowly(path: Path, data: bytes, pieces: int = 60, pause: float = 0.02) -> None:
    """Write ``data`` in pieces with pauses shorter than the settle time (one open, flushed)."""
    with open(path, "wb") as fh:
        for chunk in np.array_split(np.frombuffer(data, np.uint8), pieces):
            fh.write(chunk.tobytes())
            fh.flush()
            time.sleep(pause)


def test_natural_order() -> None:
    names = ["f_10.xy", "f_2.xy", "F_1.xy"]
    assert sorted(names, key=natural_key) == ["F_1.xy", "f_2.xy", "f_10.xy"]


def test_files_landing_while_watching(predictor: Predictor, tmp_path: Path) -> None:
    folder, out = tmp_path / "run", tmp_path / "run.csv"
    folder.mkdir()
    (folder / "f_10.xy").write_bytes(pattern_bytes(10))  # already there: first, after f_1
    (folder / "f_1.xy").write_bytes(pattern_bytes(1))
    run = Running(predictor, folder, out)
    try:
        run.wait_rows(2)
        slow = threading.Thread(target=write_slowly, args=(folder / "f_11.xy", pattern_bytes(11)))
        slow.start()  # f_11 is still being written while the next ones land complete
        time.sleep(0.1)
        (folder / "f_12.xy").write_bytes(b"this is not a pattern\n")
        (folder / "f_13.xy").write_bytes(pattern_bytes(13))
        (folder / "f_13.xy").unlink()  # removed before it settled: never read
        (folder / "notes.log").write_text("not a pattern file: never read\n")
        (folder / ".f_14.xy.part").write_bytes(pattern_bytes(14))  # a writer's temporary file
        os.replace(folder / ".f_14.xy.part", folder / "f_14.xy")
        slow.join()
        run.wait_rows(5)
        time.sleep(2 * SETTINGS.settle)  # nothing more may come
    finally:
        run.close()
    got = rows(out)
    assert [Path(r[0]).name for r in got] == ["f_1.xy", "f_10.xy", "f_11.xy", "f_12.xy", "f_14.xy"]
    error = {Path(r[0]).name: r[csv_header(predictor.phases).index("error")] for r in got}
    assert error["f_12.xy"] and not any(error[n] for n in error if n != "f_12.xy")
    # the slowly written file was read whole: the same row as predicting the finished file
    whole = predictor.predict_files([folder / "f_11.xy"], OPTIONS, workers=1, progress=False)[0]
    assert got[2] == whole.row(predictor.phases, predictor.verify)


def test_kill_and_restart_loses_nothing(predictor: Predictor, tmp_path: Path) -> None:
    folder, out = tmp_path / "run", tmp_path / "run.csv"
    folder.mkdir()
    for k in range(3):
        (folder / f"f_{k}.xy").write_bytes(pattern_bytes(k))
    run = Running(predictor, folder, out)
    run.wait_rows(3)
    run.close()
    with open(out, "ab") as fh:  # what a kill in the middle of a write leaves: half a row
        fh.write(b"run/f_3.xy,0.12")
    for k in range(3, 6):
        (folder / f"f_{k}.xy").write_bytes(pattern_bytes(k))
    run = Running(predictor, folder, out)
    assert run.log.n_rows == 3 and out.read_bytes().endswith(b"\n")
    try:
        run.wait_rows(6)
        time.sleep(2 * SETTINGS.settle)
    finally:
        run.close()
    names = [Path(r[0]).name for r in rows(out)]
    assert names == [f"f_{k}.xy" for k in range(6)]


def test_other_columns_refused(predictor: Predictor, tmp_path: Path) -> None:
    out = tmp_path / "other.csv"
    out.write_text("file,p_quartz,quartz,warning,error\n")
    from xrdmtl.errors import XrdmtlError

    with pytest.raises(XrdmtlError, match="other columns"):
        RunLog(out, csv_header(predictor.phases))
    assert out.read_text() == "file,p_quartz,quartz,warning,error\n"


def test_a_run_written_without_the_cells_says_how_to_resume(
    predictor: Predictor, tmp_path: Path
) -> None:
    """A run's CSV written before the check was the default (no cell columns) is not resumed by
    the default ``--verify`` run, and the refusal says to add ``--no-verify``."""
    from xrdmtl.errors import XrdmtlError

    out = tmp_path / "old.csv"
    plain = ",".join(csv_header(predictor.phases)) + "\n"
    out.write_text(plain)
    with pytest.raises(XrdmtlError, match="resume it with --no-verify"):
        RunLog(out, csv_header(predictor.phases, cells=True))
    assert out.read_text() == plain
    RunLog(out, csv_header(predictor.phases))  # resumed as it was written


def test_polling_finds_files_without_events(predictor: Predictor, tmp_path: Path) -> None:
    folder, out = tmp_path / "run", tmp_path / "run.csv"
    folder.mkdir()
    log = RunLog(out, csv_header(predictor.phases))
    stop = threading.Event()
    settings = WatchSettings(settle=0.2, poll=0.1)
    thread = threading.Thread(target=watch, args=(predictor, folder, log, OPTIONS, settings, stop))
    thread.start()
    try:
        (folder / "a.xy").write_bytes(pattern_bytes(1))
        end = time.monotonic() + 20
        while log.n_rows < 1 and time.monotonic() < end:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert [Path(r[0]).name for r in rows(out)] == ["a.xy"]
