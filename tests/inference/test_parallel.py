"""File prediction's bookkeeping: chunks for the pool, distinct output names."""

from __future__ import annotations

from xrdmtl.inference.parallel import _chunks, _file_names, _output_name


def test_chunks_cover_every_file_in_order() -> None:
    files = [f"f{i}" for i in range(1000)]
    chunks = _chunks(files, workers=4)
    assert [f for c in chunks for f in c] == files
    assert all(8 <= len(c) <= 256 for c in chunks[:-1])
    assert _chunks([], 4) == []


def test_output_names_are_distinct_and_frames_numbered() -> None:
    names = _file_names(["a/scan.xy", "b/scan.xy", "c/run.h5"])
    assert names == {"a/scan.xy": "scan", "b/scan.xy": "scan_2", "c/run.h5": "run"}
    assert _output_name("c/run.h5::7", names) == "run_00007"
