"""Miller indices: overbars for negative indices, an unambiguous plain form for CSV."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xrdmtl.physics.miller import OVERLINE, format_hkl


def test_hexagonal_and_trigonal_indices_get_overbars() -> None:
    assert format_hkl((2, -1, 6)) == f"21{OVERLINE}6"
    assert format_hkl((1, 0, -14)) == f"1 0 1{OVERLINE}4{OVERLINE}"
    assert format_hkl((2, -1, 6), "tex") == r"$2\bar{1}6$"
    assert format_hkl((2, -1, 6), "plain") == "2 -1 6"


def test_cubic_indices_read_as_before() -> None:
    assert format_hkl((1, 1, 1)) == "111"
    assert format_hkl((2, 0, 0), "plain") == "2 0 0"
    assert format_hkl((1, 0, 10)) == "1 0 10"


def test_unknown_style_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown hkl style"):
        format_hkl((1, 1, 1), "ascii")  # type: ignore[arg-type]


@given(st.tuples(*[st.integers(-30, 30)] * 3))
def test_plain_form_reads_back(hkl: tuple[int, int, int]) -> None:
    assert tuple(int(v) for v in format_hkl(hkl, "plain").split(" ")) == hkl
    text = format_hkl(hkl)
    assert text.count(OVERLINE) == sum(len(str(-v)) for v in hkl if v < 0)
    assert "-" not in text
