"""labels.csv: files relative to the CSV, phases in the asked order, other columns noted."""

from __future__ import annotations

from pathlib import Path

import pytest

from xrdmtl.errors import LabelsError
from xrdmtl.io.labels import read_labels


def test_reads_in_the_asked_order_and_notes_other_columns(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text(
        "file,rhenium,calcite,quartz\nsub/a.xy,1,0,1\nb.h5::3,0,1,0\n"
    )
    notes: list[str] = []
    files, labels = read_labels(tmp_path / "labels.csv", ["calcite", "rhenium"], notes.append)
    assert files == [str(tmp_path / "sub" / "a.xy"), f"{tmp_path / 'b.h5'}::3"]
    assert labels.tolist() == [[0, 1], [1, 0]]
    assert notes and "quartz" in notes[0]


def test_a_missing_phase_column_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("file,calcite\na.xy,1\n")
    with pytest.raises(LabelsError, match="rhenium"):
        read_labels(tmp_path / "labels.csv", ["calcite", "rhenium"])


@pytest.mark.parametrize(
    ("rows", "words"),
    [
        ("a.xy,1,0\nb.xy,0,1\na.xy,1,0\n", ["line 4", "line 2", "same labels"]),
        (
            "a.xy,1,0\n./sub/../a.xy,1,1\n",
            ["line 3", "line 2", "different labels", "rhenium 0 vs 1"],
        ),
        ("s.h5::3,1,0\ns.h5::4,1,0\n./s.h5::3,0,0\n", ["line 4", "line 2", "calcite 1 vs 0"]),
    ],
)
def test_a_pattern_listed_twice_is_an_error_naming_the_lines(
    tmp_path: Path, rows: str, words: list[str]
) -> None:
    """Duplicated rows would count one pattern twice (a leave-one-out then scores its own copy);
    the same file under two spellings with other labels is labeled two ways."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "labels.csv").write_text("file,calcite,rhenium\n" + rows)
    with pytest.raises(LabelsError) as err:
        read_labels(tmp_path / "labels.csv", ["calcite", "rhenium"])
    for w in words:
        assert w in str(err.value), str(err.value)


def test_frames_of_one_stack_and_absolute_spellings_are_told_apart(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text(
        f"file,calcite\ns.h5::3,1\ns.h5::4,1\n{tmp_path / 'a.xy'},0\nb.xy,0\n"
    )
    files, _ = read_labels(tmp_path / "labels.csv", ["calcite"])
    assert len(files) == 4
    (tmp_path / "labels.csv").write_text(f"file,calcite\na.xy,1\n{tmp_path / 'a.xy'},1\n")
    with pytest.raises(LabelsError, match="line 3"):
        read_labels(tmp_path / "labels.csv", ["calcite"])
