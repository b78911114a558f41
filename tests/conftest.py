"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

TEST_DATA = Path(__file__).parent / "data"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def test_data() -> Path:
    """The small data files shipped with the tests (see tests/data/README.md)."""
    return TEST_DATA


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` next to the repository; skips the test on a clone without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA
