"""Clipped file names in the results table stay distinct."""

from hypothesis import given
from hypothesis import strategies as st

from xrdmtl.cli.names import distinct_clips


def test_masked_and_unmasked_stay_apart() -> None:
    names = ["hdac_masked_xy_bc_10.npy", "hdac_unmasked_xy_bc_10.npy"]
    shown = distinct_clips(names, 16)
    assert len(set(shown)) == 2 and all(len(s) <= 16 for s in shown), shown
    assert all(s.endswith(".npy") for s in shown)  # the extension stays in view


def test_frame_numbers_keep_the_end() -> None:
    names = [f"/data/experiment/long_folder/run_{i:04d}.edf" for i in range(3)]
    assert distinct_clips(names, 16) == [f"run_{i:04d}.edf" for i in range(3)]


def test_short_names_unchanged() -> None:
    assert distinct_clips(["a.xy", "b.xy"], 16) == ["a.xy", "b.xy"]


@given(
    st.lists(st.text("ab_/.", min_size=1, max_size=60), min_size=1, max_size=8),
    st.integers(8, 40),
)
def test_distinct_names_stay_distinct(names: list[str], n: int) -> None:
    shown = distinct_clips(names, n)
    assert all(len(s) <= n for s in shown)
    assert len(set(shown)) == len(set(names))


def test_a_shared_folder_gives_way_to_the_names() -> None:
    names = ["/tmp/clipdemo/hdac_masked_xy_bc_10.npy", "/tmp/clipdemo/hdac_unmasked_xy_bc_10.npy"]
    shown = distinct_clips(names, 18)
    assert shown[0].startswith("hdac_m") and shown[1].startswith("hdac_u"), shown
