"""Atomic writes: the new file appears whole with mode 0644, or not at all (old file kept, no temp)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from xrdmtl.atomic import atomic_path, write_bytes, write_text


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_bytes_creates_folder_and_file(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "data.bin"
    write_bytes(path, b"\x00\x01xyz")
    assert path.read_bytes() == b"\x00\x01xyz"
    assert _mode(path) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["data.bin"]


def test_write_text_replaces_and_keeps_newlines(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("old\n")
    write_text(path, "a,b\r\n1,2\r\n", newline="")
    assert path.read_bytes() == b"a,b\r\n1,2\r\n"
    write_text(path, "héllo\n")
    assert path.read_bytes() == "héllo\n".encode()
    assert _mode(path) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]


def test_atomic_path_suffix_and_location(tmp_path: Path) -> None:
    path = tmp_path / "fig.png"
    with atomic_path(path, suffix=".png") as tmp:
        assert tmp.parent == tmp_path
        assert tmp.suffix == ".png"
        assert tmp.is_file() and not path.exists()  # an empty temp file until the block ends
        tmp.write_bytes(b"png")
    assert path.read_bytes() == b"png"
    assert not tmp.exists()
    assert _mode(path) == 0o644


def test_failure_keeps_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "keep.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_failure_after_writer_deleted_temp(tmp_path: Path) -> None:
    path = tmp_path / "x.dat"
    with pytest.raises(OSError), atomic_path(path) as tmp:
        tmp.unlink()  # writers that refuse to overwrite delete it first, then fail
        raise OSError("no")
    assert list(tmp_path.iterdir()) == []


def test_keyboard_interrupt_cleans_up(tmp_path: Path) -> None:
    path = tmp_path / "y.bin"
    with pytest.raises(KeyboardInterrupt), atomic_path(path) as tmp:
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
