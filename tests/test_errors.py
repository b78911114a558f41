"""Error types: one line naming the input and the problem."""

from __future__ import annotations

import pytest

from xrdmtl.errors import FrameError, LabelsError, ModelError, PatternError, PhaseError, XrdmtlError


@pytest.mark.parametrize("kind", [PatternError, FrameError, PhaseError, ModelError, LabelsError])
def test_every_error_is_one_line_naming_its_source(kind: type[XrdmtlError]) -> None:
    err = kind("cannot read:\n  bad   value", "scan.xy")
    assert isinstance(err, XrdmtlError)
    assert str(err) == "scan.xy: cannot read: bad value" and "\n" not in str(err)
    assert err.source == "scan.xy" and err.reason == "cannot read: bad value"
    assert str(kind("no source")) == "no source"
