"""Every bad input or interruption ends in one clear line, never a traceback (issue 16)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clitools import WAVELENGTH, error_lines, invoke


def _clean(res, code: int) -> list[str]:
    """The run exited with ``code``, printed no traceback and at least one one-line error."""
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), (
        res.exception
    )
    lines = error_lines(res)
    assert lines, res.output
    return lines


def test_inputs_that_expand_to_nothing(tmp_path: Path, frames_run: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = {
        str(empty): "holds no",
        str(frames_run / "frames"): "--poni",  # frames without their geometry
        str(tmp_path / "missing.xy"): "no such file",
        str(tmp_path / "nope*.xy"): "matches",
    }
    for arg, words in cases.items():
        res = invoke("predict", arg, "--wavelength", WAVELENGTH, "--workers", "2")
        lines = _clean(res, 1)
        assert "max_workers" not in res.output
        assert len(lines) == 1 and arg in lines[0] and words in lines[0], lines


def test_labels_not_utf8(examples: Path) -> None:
    bad = examples / "latin1.csv"
    bad.write_bytes("file,bastnaesite,calcite,rhenium\nsc\xe4n.npy,0,0,1\n".encode("latin-1"))
    res = invoke("evaluate", "--labels", bad, "--wavelength", WAVELENGTH, "--workers", "1")
    (line,) = _clean(res, 2)
    assert "latin1.csv" in line and "UTF-8" in line

    utf16 = examples / "utf16.csv"  # a UTF-16 file with its byte-order mark is read as such
    text = (examples / "labels.csv").read_text(encoding="utf-8")
    utf16.write_bytes(text.encode("utf-16"))
    res = invoke("audit", "--labels", utf16, "--wavelength", WAVELENGTH, "--no-model")
    assert "UTF-8" not in res.output and "Traceback" not in res.output
    assert res.exit_code in (0, 1), res.output


def _poni(frames_run: Path, tmp_path: Path, old: str, new: str) -> Path:
    text = (frames_run / "geometry.poni").read_text()
    assert old in text
    path = tmp_path / "bad.poni"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ('"max_shape": [768, 768]}', '"max_shape": [768, 768', "detector"),
        ("Detector: Pilatus", "Detector: NoSuchDetector9000", "nosuchdetector9000"),
        ("Distance: 0.14", "Distance: far", "distance"),
    ],
)
def test_bad_poni_is_one_short_line(
    frames_run: Path, tmp_path: Path, old: str, new: str, words: str
) -> None:
    poni = _poni(frames_run, tmp_path, old, new)
    res = invoke(
        "predict", frames_run / "frames" / "frame_00000.edf", "--poni", poni, "--workers", "1"
    )
    (line,) = _clean(res, 2)
    assert "bad.poni" in line and words.lower() in line.lower()
    assert len(res.stderr) < 400, res.stderr  # no detector list, no pyFAI log
    assert "dict_keys" not in res.stderr


def test_scheduler_malformed_or_unreachable(examples: Path) -> None:
    import dask

    scan = examples / "hdac_unmasked_xy_n_2.npy"
    res = invoke("predict", scan, "--wavelength", WAVELENGTH, "--scheduler", "foo::bar")
    (line,) = _clean(res, 2)
    assert "--scheduler" in line and "foo::bar" in line
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        t0 = time.monotonic()
        res = invoke(
            "predict", scan, "--wavelength", WAVELENGTH, "--scheduler", "tcp://127.0.0.1:9"
        )
    (line,) = _clean(res, 2)
    assert "--scheduler" in line and "tcp://127.0.0.1:9" in line
    assert time.monotonic() - t0 < 60


def test_ctrl_c_is_one_line_and_exit_130(examples: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from xrdmtl.inference.predictor import Predictor

    def interrupted(*args, **kwargs):  # the interrupt arrives in the middle of the work
        raise KeyboardInterrupt

    monkeypatch.setattr(Predictor, "predict_files", interrupted)
    out = examples / "preds.csv"
    res = invoke(
        "predict",
        examples / "hdac_unmasked_xy_n_2.npy",
        "--wavelength",
        WAVELENGTH,
        "--workers",
        "1",
        "--out",
        out,
    )
    assert res.exit_code == 130, res.output
    assert "interrupted" in res.stderr and "Traceback" not in res.output
    assert not out.exists()


def test_pool_workers_ignore_ctrl_c() -> None:
    """Workers leave SIGINT to the parent, which cancels the pool: no traceback from each worker."""
    code = (
        "import signal; from xrdmtl.inference import parallel; from xrdmtl.inference.predictor import "
        "Predictor; parallel._init_worker(None); "
        "print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr


def _wait_for_workers(proc: subprocess.Popen, timeout: float = 90.0) -> None:
    """Wait until ``proc`` has started its worker processes (then its own Ctrl-C handling is in
    place: a SIGINT while a loaded machine is still importing torch would kill the interpreter
    before any handler exists), or has ended; where /proc lists no children, a fixed 8 s."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    if not children.exists():
        time.sleep(8)
        return
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        try:
            if children.read_text().split():
                time.sleep(1)
                return
        except OSError:
            return
        time.sleep(0.2)


@pytest.mark.slow
def test_ctrl_c_on_a_worker_pool_prints_no_traceback(tmp_path: Path, examples: Path) -> None:
    """A real SIGINT to the whole process group (as a terminal sends it) while workers run."""
    data = tmp_path / "many"
    data.mkdir()
    src = (examples / "hdac_unmasked_xy_n_2.npy").read_bytes()
    for i in range(3000):
        (data / f"p{i:05d}.npy").write_bytes(src)
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="100")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xrdmtl",
            "predict",
            str(data),
            "--wavelength",
            WAVELENGTH,
            "--workers",
            "2",
            "--out",
            str(tmp_path / "p.csv"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env,
    )
    _wait_for_workers(proc)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err, err
    if proc.returncode != 0:  # interrupted (not finished before the signal)
        assert proc.returncode == 130, err
        assert err.strip().splitlines()[-1].startswith("interrupted"), err
        assert not (tmp_path / "p.csv").exists()


def test_evaluate_with_nothing_read_is_an_error(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("file,bastnaesite,calcite,rhenium\nnope1.npy,0,0,1\nnope2.npy,1,0,0\n")
    for extra in ([], ["--json"]):
        res = invoke(
            "evaluate", "--labels", labels, "--wavelength", WAVELENGTH, "--workers", "1", *extra
        )
        assert res.exit_code == 2, res.output
        assert "1.000" not in res.output and "F1" not in res.stdout
        assert any("no labeled pattern could be read" in line for line in error_lines(res)), (
            res.output
        )
        assert "nope1.npy" in res.stderr and "Traceback" not in res.output
        if extra:
            assert res.stdout == "" or "exact_match" not in json.loads(res.stdout)


def test_audit_with_nothing_read_prints_no_nan(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("file,bastnaesite,calcite,rhenium\nnope1.npy,0,0,1\nnope2.npy,1,0,0\n")
    res = invoke("audit", "--labels", labels, "--wavelength", WAVELENGTH)
    assert res.exit_code in (1, 2), res.output
    assert "nan" not in res.output.lower() and "Traceback" not in res.output
    assert "nope1.npy" in res.stderr


def test_crossval_n_beyond_the_labels_is_one_line(examples: Path) -> None:
    res = invoke(
        "crossval",
        "--labels",
        examples / "labels.csv",
        "--wavelength",
        WAVELENGTH,
        "--n",
        "10",
        "--no-loo",
    )
    (line,) = _clean(res, 2)
    assert "--n 10" in line
