"""Nothing lost: an output never replaces an input, a device or a folder, and a bad output path is
refused with one line before any work (issue 16). Inputs are compared by checksum before and after."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from clitools import WAVELENGTH, digest, error_lines, invoke


def _one_error(res, *words: str) -> str:
    """The run failed with exactly one ``error:`` line holding every word, and no traceback."""
    lines = error_lines(res)
    assert len(lines) == 1, res.output
    assert "Traceback" not in res.output
    for w in words:
        assert w.lower() in lines[0].lower(), lines[0]
    return lines[0]


def test_out_equal_to_an_input_is_refused(examples: Path, tmp_path: Path) -> None:
    scan = examples / "hdac_unmasked_xy_n_2.npy"
    before = digest(scan)
    link = tmp_path / "link.npy"
    link.symlink_to(scan)
    spellings = [scan, Path(os.path.relpath(scan)), scan.parent / "." / scan.name, link]
    for out in spellings:
        res = invoke("predict", scan, "--wavelength", WAVELENGTH, "--out", out, "--workers", "1")
        assert res.exit_code == 2, res.output
        _one_error(res, "--out", "input")
        assert digest(scan) == before
        assert res.stdout == ""
    assert link.is_symlink()


def test_out_equal_to_a_file_found_in_an_input_folder_is_refused(examples: Path) -> None:
    target = examples / "hdac_masked_xy_bc_10.npy"
    before = {p: digest(p) for p in examples.rglob("*") if p.is_file()}
    res = invoke("predict", examples, "--wavelength", WAVELENGTH, "--out", target, "--workers", "1")
    assert res.exit_code == 2, res.output
    _one_error(res, "--out", "input")
    assert {p: digest(p) for p in examples.rglob("*") if p.is_file()} == before


def test_audit_out_equal_to_the_labels_is_refused(examples: Path) -> None:
    labels = examples / "labels.csv"
    before = digest(labels)
    res = invoke(
        "audit", "--labels", labels, "--wavelength", WAVELENGTH, "--no-model", "--out", labels
    )
    assert res.exit_code == 2, res.output
    _one_error(res, "--out", "labels")
    assert digest(labels) == before


def test_out_onto_a_folder_is_refused_before_the_work(examples: Path, tmp_path: Path) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    plots = tmp_path / "plots"
    res = invoke(
        "predict",
        examples / "hdac_unmasked_xy_n_2.npy",
        "--wavelength",
        WAVELENGTH,
        "--out",
        folder,
        "--plot",
        plots,
        "--workers",
        "1",
    )
    assert res.exit_code == 2, res.output
    _one_error(res, "--out", "folder")
    assert folder.is_dir() and not any(folder.iterdir())
    assert not plots.exists()  # refused before any work: no plot was drawn


def test_out_below_a_regular_file_is_refused(examples: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me\n")
    res = invoke(
        "predict",
        examples / "hdac_unmasked_xy_n_2.npy",
        "--wavelength",
        WAVELENGTH,
        "--out",
        blocker / "preds.csv",
        "--workers",
        "1",
    )
    assert res.exit_code == 2, res.output
    _one_error(res, "--out")
    assert blocker.read_text() == "keep me\n"


def test_out_in_a_folder_that_cannot_exist_is_refused_before_the_work(
    examples: Path, tmp_path: Path
) -> None:
    """A folder under a regular file cannot be made, not even by root (unlike a read-only one)."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file\n")
    res = invoke(
        "predict",
        examples / "hdac_unmasked_xy_n_2.npy",
        "--wavelength",
        WAVELENGTH,
        "--out",
        blocker / "run" / "preds.csv",
        "--workers",
        "1",
    )
    assert res.exit_code == 2, res.output
    _one_error(res, "--out", "cannot write")
    assert blocker.read_text() == "a file\n"


def test_out_in_an_unwritable_place_is_refused_before_the_work(examples: Path) -> None:
    """/proc takes no new files, even from root."""
    res = invoke(
        "predict",
        examples / "hdac_unmasked_xy_n_2.npy",
        "--wavelength",
        WAVELENGTH,
        "--out",
        "/proc/xrdmtl-test/preds.csv",
        "--workers",
        "1",
    )
    assert res.exit_code == 2, res.output
    _one_error(res, "--out", "cannot write")


def test_plot_pointing_at_a_file_is_refused_before_the_work(examples: Path, tmp_path: Path) -> None:
    plot = tmp_path / "plot.png"
    plot.write_bytes(b"not a folder")
    out = tmp_path / "preds.csv"
    res = invoke(
        "predict",
        examples / "hdac_unmasked_xy_n_2.npy",
        "--wavelength",
        WAVELENGTH,
        "--plot",
        plot,
        "--out",
        out,
        "--workers",
        "1",
    )
    assert res.exit_code == 2, res.output
    _one_error(res, "--plot", "not a folder")
    assert plot.read_bytes() == b"not a folder"
    assert not out.exists()  # refused before any work


def _char_device(path: Path, minor: int) -> Path:
    """A character device node like /dev/null (minor 3) or /dev/full (minor 7), or skip."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot make a device node here: {exc}")
    return path


def test_out_to_a_device_writes_into_it_and_never_replaces_it(
    examples: Path, tmp_path: Path
) -> None:
    null = _char_device(tmp_path / "null", 3)
    res = invoke(
        "predict",
        examples / "hdac_unmasked_xy_n_2.npy",
        "--wavelength",
        WAVELENGTH,
        "--out",
        null,
        "--workers",
        "1",
    )
    assert res.exit_code == 0, res.output
    assert stat.S_ISCHR(null.stat().st_mode)

    full = _char_device(tmp_path / "full", 7)
    res = invoke(
        "predict",
        examples / "hdac_unmasked_xy_n_2.npy",
        "--wavelength",
        WAVELENGTH,
        "--out",
        full,
        "--workers",
        "1",
    )
    assert res.exit_code == 2, res.output
    _one_error(res, "--out", "no space left")
    assert stat.S_ISCHR(full.stat().st_mode)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_out_to_a_fifo_writes_into_it(examples: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    res = invoke(
        "predict",
        examples / "hdac_unmasked_xy_n_2.npy",
        "--wavelength",
        WAVELENGTH,
        "--out",
        fifo,
        "--workers",
        "1",
    )
    reader.join(30)
    assert res.exit_code == 0, res.output
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert got and got[0].decode().startswith("file,p_bastnaesite")


def test_save_integrated_never_overwrites(frames_run: Path, tmp_path: Path) -> None:
    frame = frames_run / "frames" / "frame_00000.edf"
    folder = tmp_path / "integrated"
    folder.mkdir()
    precious = folder / "frame_00000.xy"
    precious.write_text("# Dioptas output, hand-made\n1 2\n")
    before = digest(precious)
    args = ["predict", frame, "--poni", frames_run / "geometry.poni", "--workers", "1"]
    res = invoke(*args, "--save-integrated", folder)
    assert res.exit_code == 2, res.output
    _one_error(res, "--save-integrated", "overwrite", "frame_00000.xy")
    assert digest(precious) == before
    assert sorted(p.name for p in folder.iterdir()) == ["frame_00000.xy"]

    fresh = tmp_path / "fresh"
    res = invoke(*args, "--save-integrated", fresh)
    assert res.exit_code == 0, res.output
    saved = fresh / "frame_00000.xy"
    first = digest(saved)
    again = invoke(*args, "--save-integrated", fresh)  # a rerun into the same folder: refused, kept
    assert again.exit_code == 2, again.output
    assert digest(saved) == first


def test_save_integrated_onto_a_file_is_refused(frames_run: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "integrated"
    blocker.write_text("x")
    res = invoke(
        "predict",
        frames_run / "frames" / "frame_00000.edf",
        "--poni",
        frames_run / "geometry.poni",
        "--save-integrated",
        blocker,
        "--workers",
        "1",
    )
    assert res.exit_code == 2, res.output
    _one_error(res, "--save-integrated", "not a folder")
    assert blocker.read_text() == "x"


def test_finetune_out_onto_the_model_is_refused(examples: Path, tmp_path: Path) -> None:
    import shutil
    from importlib import resources

    model = tmp_path / "model"
    shutil.copytree(Path(str(resources.files("xrdmtl") / "data" / "models" / "default")), model)
    before = {p.name: digest(p) for p in model.iterdir()}
    res = invoke(
        "finetune",
        "--labels",
        examples / "labels.csv",
        "--wavelength",
        WAVELENGTH,
        "--model",
        model,
        "--out",
        model,
        "--steps",
        "1",
    )
    assert res.exit_code == 2, res.output
    _one_error(res, "--out", "--model")
    assert {p.name: digest(p) for p in model.iterdir()} == before


def test_out_equal_to_the_geometry_mask_or_model_is_refused(
    frames_run: Path, tmp_path: Path
) -> None:
    import shutil

    poni = tmp_path / "geometry.poni"
    shutil.copy(frames_run / "geometry.poni", poni)
    mask = tmp_path / "mask.edf"
    shutil.copy(frames_run / "masks" / "frame_00000.edf", mask)
    frame = frames_run / "frames" / "frame_00000.edf"
    for out, extra in ((poni, []), (mask, ["--mask", mask])):
        before = digest(out)
        res = invoke("predict", frame, "--poni", poni, *extra, "--out", out, "--workers", "1")
        assert res.exit_code == 2, res.output
        _one_error(res, "--out", "input")
        assert digest(out) == before
