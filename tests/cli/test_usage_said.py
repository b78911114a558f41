"""Every usage error is one line, no traceback; every option that does nothing in context says so;
no input gives a plausible wrong answer in silence (issue 27)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from clitools import WAVELENGTH, error_lines, invoke
from toymodels import toy_model

SCAN = "hdac_unmasked_xy_n_2.npy"


def _one_line(res, *words: str) -> str:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and not isinstance(res.exception, (KeyError, ValueError))
    (line,) = error_lines(res)
    for w in words:
        assert w in line, line
    return line


def _notes(res) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.startswith("note:")]


def test_a_negative_seed_is_one_line_on_every_command(examples: Path, tmp_path: Path) -> None:
    labels = examples / "labels.csv"
    commands = [
        ["simulate", "patterns", "--n", "1", "--out", tmp_path / "a"],
        ["simulate", "frames", "--n", "1", "--out", tmp_path / "b"],
        ["train", "--out", tmp_path / "c"],
        ["finetune", "--labels", labels, "-w", WAVELENGTH, "--out", tmp_path / "d"],
        ["crossval", "--labels", labels, "-w", WAVELENGTH],
    ]
    for cmd in commands:
        _one_line(invoke(*cmd, "--seed", "-1"), "--seed", "-1")
    assert not [p for p in tmp_path.iterdir() if p.name != "examples"]


def test_phases_that_name_nothing_or_one_phase_twice(tmp_path: Path) -> None:
    _one_line(invoke("train", "--out", tmp_path / "m", "--phases", ""), "--phases", "no phase")
    _one_line(invoke("train", "--out", tmp_path / "m", "--phases", " , "), "--phases")
    _one_line(
        invoke("train", "--out", tmp_path / "m", "--phases", "calcite,rhenium,calcite"),
        "calcite",
        "more than once",
    )


def test_contradicting_options_are_a_usage_error(examples: Path, tmp_path: Path) -> None:
    labels = examples / "labels.csv"
    res = invoke("finetune", "--labels", labels, "-w", WAVELENGTH, "--out", tmp_path / "m",
                 "--drop-contradicted", "--contradicted", "keep")  # fmt: skip
    _one_line(res, "--drop-contradicted", "--contradicted keep", "contradict")
    _one_line(invoke("train", "--out", tmp_path / "m", "--epochs", "2", "--steps", "9"), "--epochs")
    assert not (tmp_path / "m").exists()


def test_options_that_do_nothing_say_so(examples: Path, tmp_path: Path, frames_run: Path) -> None:
    scan = examples / SCAN
    blocker = tmp_path / "file"  # an --out that is refused, so that nothing runs long
    blocker.write_text("x")
    poni = frames_run / "geometry.poni"
    labels = examples / "labels.csv"
    cases = [
        (["finetune", "--labels", labels, "-w", WAVELENGTH, "--adapt-lattice", "--out", blocker],
         "--adapt-lattice"),
        (["finetune", "--labels", labels, "-w", WAVELENGTH, "--layers", "all", "--out", blocker],
         "--layers"),
        (["finetune", "--labels", labels, "-w", WAVELENGTH, "--no-audit", "--contradicted", "keep",
          "--out", blocker], "--contradicted"),
        (["train", "-w", WAVELENGTH, "--mask", "auto", "--out", blocker], "--wavelength, --mask"),
        (["predict", scan, "-w", WAVELENGTH, "--mask", "auto", "--out", blocker], "--mask"),
        (["predict", scan, "-w", WAVELENGTH, "--poni", poni, "--out", blocker], "--poni"),
        (["predict", scan, "-w", WAVELENGTH, "--save-integrated", tmp_path / "i", "--out", blocker],
         "--save-integrated"),
        (["audit", "--labels", labels, "--no-model", "--model", tmp_path, "-w", WAVELENGTH,
          "--out", tmp_path], "--model"),
    ]  # fmt: skip
    for args, option in cases:
        res = invoke(*args)
        assert res.exit_code == 2, res.output
        notes = [n for n in _notes(res) if option in n and "does nothing" in n]
        assert len(notes) == 1, (args, res.stderr)
    res = invoke("phases", "--wavelength", "1.54")
    assert res.exit_code == 0 and any("--wavelength does nothing" in n for n in _notes(res))
    quiet = invoke("predict", scan, "-w", WAVELENGTH, "--out", blocker)
    assert _notes(quiet) == [], quiet.stderr  # nothing idle, nothing said


def test_a_2d_npy_is_told_to_give_its_geometry(tmp_path: Path) -> None:
    np.save(tmp_path / "image.npy", np.random.default_rng(0).random((64, 64)))
    res = invoke("predict", tmp_path / "image.npy", "-w", WAVELENGTH, "--workers", "1")
    assert res.exit_code == 1, res.output
    (line,) = error_lines(res)
    assert "2D image" in line and "--poni" in line and "2×N" in line


def test_a_garbage_cbf_is_one_readable_line(tmp_path: Path, frames_run: Path) -> None:
    bad = tmp_path / "scan.cbf"
    bad.write_bytes(b"###CBF: VERSION 1.5\n" + bytes(range(256)) * 8)
    noise = tmp_path / "noise.cbf"
    noise.write_bytes(np.random.default_rng(1).bytes(3000))
    res = invoke("predict", bad, noise, "--poni", frames_run / "geometry.poni", "--workers", "1")
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    lines = error_lines(res)
    assert len(lines) == 2 and "AttributeError:" not in res.output, lines


def test_the_wavelength_option_serves_a_poni_that_states_none(
    tmp_path: Path, frames_run: Path
) -> None:
    poni = tmp_path / "no_wavelength.poni"
    text = (frames_run / "geometry.poni").read_text()
    poni.write_text("".join(li for li in text.splitlines(True) if "wavelength" not in li.lower()))
    frame = sorted((frames_run / "frames").iterdir())[0]
    res = invoke("predict", frame, "--poni", poni, "--workers", "1")
    _one_line(res, "states no wavelength", "--wavelength")
    res = invoke("predict", frame, "--poni", poni, "-w", "0.561", "--workers", "1")
    assert res.exit_code == 0, res.output
    header, line = res.stdout.splitlines()[:2]
    row = dict(zip(header.split(","), line.split(","), strict=True))
    got = [row["wavelength"], row["wavelength_source"], row["x_unit"]]
    assert got == ["0.561", "option", "2th_deg"], row


def test_a_labels_file_with_a_pattern_twice_is_refused_naming_the_lines(examples: Path) -> None:
    labels = examples / "twice.csv"
    text = (examples / "labels.csv").read_text()
    first = text.splitlines()[1]
    labels.write_text(text + "./" + first + "\n")
    for cmd in (["evaluate"], ["crossval"], ["audit", "--no-model"]):
        line = _one_line(invoke(*cmd, "--labels", labels, "-w", WAVELENGTH), "line 8", "line 2")
        assert "same labels" in line


def test_crossval_on_few_patterns_without_n_says_no_word_about_n(
    examples: Path, tmp_path: Path
) -> None:
    base = toy_model(tmp_path / "base")
    lines = (examples / "labels.csv").read_text().splitlines()
    labels = examples / "three.csv"
    labels.write_text("\n".join(lines[:4]) + "\n")
    res = invoke("crossval", "--labels", labels, "--model", base, "-w", WAVELENGTH, "--json")
    assert res.exit_code == 0 and "error" not in res.stderr, res.output
    assert any("leaves out N = 5, 10, 20" in n for n in _notes(res)), res.stderr


def test_evaluate_shows_n_a_for_a_phase_with_nothing_to_count(
    examples: Path, tmp_path: Path
) -> None:
    lines = (examples / "labels.csv").read_text().splitlines()
    labels = examples / "no_rhenium.csv"
    labels.write_text("\n".join(li for li in lines if not li.endswith(",1")) + "\n")
    res = invoke("evaluate", "--labels", labels, "-w", WAVELENGTH, "--workers", "1", "--json")
    assert res.exit_code == 0, res.output
    import json

    rhenium = json.loads(res.stdout)["phases"]["rhenium"]
    assert rhenium["positives"] == 0 and rhenium["recall"] is None


def test_a_ctrl_c_while_workers_start_stops_the_run_once_they_have_started() -> None:
    """SIGINT is deferred, not ignored, while workers start: a child started then has it blocked
    (no traceback from a worker mid-import), and a Ctrl-C meanwhile stops the run at the end."""
    from xrdmtl.inference.parallel import _sigint_deferred

    code = "import signal; print(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))"
    reached = False
    with pytest.raises(KeyboardInterrupt), _sigint_deferred():
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)
        reached = True
    assert reached and child.stdout.strip() == "True", child.stderr
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_while_python_exits_prints_no_traceback() -> None:
    """After a handled Ctrl-C, Python joins the remaining threads (a worker pool's) at exit; a
    second Ctrl-C then used to print a KeyboardInterrupt traceback from threading._shutdown."""
    code = (
        "import importlib, os, signal, threading, time\n"
        "app = importlib.import_module('xrdmtl.cli.app')\n"
        "def late():\n"
        "    time.sleep(1.0)\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(1.0)\n"
        "@app.clean_errors\n"
        "def run():\n"
        "    threading.Thread(target=late).start()\n"
        "    raise KeyboardInterrupt\n"
        "run()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode in (130, -signal.SIGINT), out.stderr
    assert "Traceback" not in out.stderr and out.stderr.startswith("interrupted"), out.stderr
