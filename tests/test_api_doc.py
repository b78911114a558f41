"""``docs/api.md``, the Python API page: its examples run as printed (a doctest, in an empty folder)
and it names every public name of ``xrdmtl``."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

import xrdmtl

API = Path(__file__).resolve().parents[1] / "docs" / "api.md"


@pytest.mark.slow  # the shipped model on 1 + 1 + 29 patterns, one plot, one adaptation (≈ 10 s)
def test_api_page_runs_as_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = doctest.testfile(str(API), module_relative=False, report=True)
    assert result.attempted >= 8 and result.failed == 0, f"{result.failed} example(s) failed"
    assert (tmp_path / "plots" / "hdac_unmasked_xy_bc_10.png").stat().st_size > 10_000
    assert (tmp_path / "adapted" / "model.json").is_file()


def test_api_page_names_every_public_name() -> None:
    text = API.read_text(encoding="utf-8")
    missing = [name for name in xrdmtl.__all__ if name != "__version__" and f"`{name}`" not in text]
    assert not missing, f"docs/api.md does not name {missing}"
