"""Label audit: flags labels the patterns contradict, with and without a model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import synthetic

from xrdmtl.errors import LabelsError
from xrdmtl.inference.results import Prediction
from xrdmtl.io.read import ReadOptions
from xrdmtl.physics.peaks import PhaseEvidence
from xrdmtl.workflows.audit import CSV_COLUMNS, audit_labels, verdict

PHASES = ["bastnaesite", "calcite", "rhenium"]


def write_set(folder: Path, rows: list[tuple[str, dict[str, float], str]]) -> Path:
    """Write 2×N ``.npy`` patterns (2θ, intensity) and a labels CSV; returns the CSV."""
    lines = ["file," + ",".join(PHASES)]
    for i, (name, contents, labels) in enumerate(rows):
        p = synthetic(contents, seed=10 + i)
        np.save(folder / f"{name}.npy", np.stack([p.x, p.y]))
        lines.append(f"{name}.npy," + ",".join(labels))
    csv_path = folder / "labels.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    return csv_path


@pytest.fixture
def labeled(tmp_path: Path) -> Path:
    return write_set(
        tmp_path,
        [
            ("calcite_ok", {"calcite": 1.0}, "010"),
            ("rhenium_ok", {"rhenium": 1.0}, "001"),
            ("none_ok", {}, "000"),
            ("calcite_labeled_rhenium", {"calcite": 1.0}, "001"),
        ],
    )


def test_flags_the_wrong_label(labeled: Path, tmp_path: Path) -> None:
    table = audit_labels(
        labeled, None, ReadOptions(wavelength=0.561), use_model=False, plot_dir=tmp_path / "plots"
    )
    assert table.model is None
    assert not table.errors
    assert len(table.rows) == 4 * len(PHASES)
    flagged = {(Path(r.file).stem, r.phase, r.label) for r in table.flagged}
    assert flagged == {
        ("calcite_labeled_rhenium", "calcite", 0),
        ("calcite_labeled_rhenium", "rhenium", 1),
    }
    wrong = next(r for r in table.flagged if r.phase == "calcite")
    assert wrong.evidence.score > 0.8 and "peaks are there" in wrong.reason
    assert all(r.verdict == "agrees" for r in table.rows if "_ok" in r.file)
    assert [Path(p).name for p in table.plots.values()] == ["calcite_labeled_rhenium.png"]
    assert Path(next(iter(table.plots.values()))).stat().st_size > 1000
    acc = table.accuracy()["physics"]
    assert acc["exact_match"] == pytest.approx(0.75)
    assert acc["calcite"] == pytest.approx(0.75)
    assert {(Path(r.file).stem, r.phase) for r in table.disagreements} >= {
        ("calcite_labeled_rhenium", "calcite"),
        ("calcite_labeled_rhenium", "rhenium"),
    }


def test_outputs(labeled: Path, tmp_path: Path) -> None:
    table = audit_labels(labeled, None, ReadOptions(wavelength=0.561), use_model=False)
    out = tmp_path / "out" / "audit.csv"
    text = table.to_csv(out)
    assert out.read_text() == text
    lines = text.splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS)
    assert len(lines) == 1 + 4 * len(PHASES)
    doc = json.loads(json.dumps(table.to_json()))
    assert doc["accuracy"]["physics"]["exact_match"] == pytest.approx(0.75)
    assert len(doc["flagged"]) == 2
    assert doc["rows"][0]["matched"] is not None
    assert table.rich_table().row_count == 4


def test_unreadable_pattern_is_listed_and_the_rest_audited(labeled: Path) -> None:
    (labeled.parent / "broken.npy").write_bytes(b"not numpy")
    with labeled.open("a") as fh:
        fh.write("broken.npy,0,0,0\n")
    table = audit_labels(labeled, None, ReadOptions(wavelength=0.561), use_model=False)
    assert list(table.errors) == [str(labeled.parent / "broken.npy")]
    assert len(table.rows) == 4 * len(PHASES)
    assert "error" in table.to_csv().splitlines()[-1]


def test_bad_labels(tmp_path: Path) -> None:
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("file,unobtainium\na.npy,1\n")
    with pytest.raises(LabelsError, match="unobtainium"):
        audit_labels(csv_path, None, ReadOptions(wavelength=0.561), use_model=False)


@dataclass
class StubPredictor:
    """A model that says calcite everywhere (stands in for a Predictor)."""

    phases: tuple[str, ...] = tuple(PHASES)

    def predict_patterns(self, patterns: list, labels: list[str]) -> list[Prediction]:
        probs = {"bastnaesite": 0.1, "calcite": 0.9, "rhenium": 0.2}
        return [Prediction(f, probs, {k: int(v >= 0.5) for k, v in probs.items()}) for f in labels]


def test_model_probabilities_enter_the_verdict(labeled: Path) -> None:
    table = audit_labels(labeled, StubPredictor(), ReadOptions(wavelength=0.561))
    assert table.model == "StubPredictor"
    assert all(r.probability is not None for r in table.rows)
    acc = table.accuracy()
    assert acc["model"]["exact_match"] == pytest.approx(0.25)  # right on calcite_ok only
    by = {(Path(r.file).stem, r.phase): r for r in table.rows}
    assert by[("rhenium_ok", "rhenium")].verdict == "agrees"
    # the model calls calcite where the peaks say none: uncertain, not contradicted
    assert by[("none_ok", "calcite")].verdict == "uncertain"
    assert "model says present" in by[("none_ok", "calcite")].reason
    assert by[("calcite_labeled_rhenium", "calcite")].verdict == "contradicted"


def _evidence(score: float, max_z: float) -> PhaseEvidence:
    return PhaseEvidence("x", score, 1.0, (), (), (), 5, max_z)


@pytest.mark.parametrize(
    ("label", "score", "max_z", "model", "expected"),
    [
        (1, 0.9, 40.0, None, "agrees"),
        (1, 0.0, 0.0, None, "contradicted"),
        (1, 0.0, 0.0, 1, "uncertain"),
        (1, 0.35, 6.0, 1, "agrees"),
        (1, 0.35, 6.0, 0, "uncertain"),
        (0, 0.0, 0.0, None, "agrees"),
        (0, 0.0, 0.0, 1, "uncertain"),
        (0, 0.9, 40.0, None, "contradicted"),
        (0, 0.9, 40.0, 0, "uncertain"),
        (0, 0.35, 6.0, 0, "agrees"),
        (0, 0.6, 6.0, None, "uncertain"),
    ],
)
def test_verdict_rules(
    label: int, score: float, max_z: float, model: int | None, expected: str
) -> None:
    assert verdict(label, _evidence(score, max_z), model)[0] == expected


def test_hdac_known_label_problems(shared_data: Path, tmp_path: Path) -> None:
    hdac = shared_data / "hdac"
    if not (hdac / "labels_masked.csv").is_file():
        pytest.skip("hdac patterns absent")
    rows = [
        line
        for line in (hdac / "labels_masked.csv").read_text().splitlines()
        if line.startswith("file")
        or any(k in line for k in ("xy_c_62.", "xy_r_102.", "xy_bc_42.", "xy_n_2."))
    ]
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("\n".join(r.replace("masked/", f"{hdac}/masked/", 1) for r in rows) + "\n")
    table = audit_labels(csv_path, None, ReadOptions(wavelength=0.561), use_model=False)
    flagged = {(Path(r.file).stem, r.phase) for r in table.flagged}
    assert (
        "xy_c_62",
        "bastnaesite",
    ) in flagged  # labeled calcite only, its peaks are bastnaesite's
    assert ("xy_c_62", "calcite") in flagged
    assert ("xy_r_102", "rhenium") in flagged  # no rhenium peak stands out
    assert not any(f in ("xy_bc_42", "xy_n_2") for f, _ in flagged)
    c62 = next(r for r in table.flagged if r.phase == "bastnaesite")
    assert c62.evidence.lattice_scale == pytest.approx(1.0, abs=0.01)  # the measured La cell fits


def test_cli_audit(labeled: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from xrdmtl.cli.app import app

    out = tmp_path / "audit.csv"
    args = [
        "audit",
        "--labels",
        str(labeled),
        "--wavelength",
        "0.561",
        "--no-model",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(app, [*args, "--plot", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    assert "2 contradicted label(s)" in result.output
    assert out.is_file() and (tmp_path / "plots" / "calcite_labeled_rhenium.png").is_file()
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0
    assert len(json.loads(result.stdout)["flagged"]) == 2


def test_frames_with_geometry(tmp_path: Path) -> None:
    from xrdmtl.synthesis.frames import simulate_frames

    out = simulate_frames(tmp_path / "sim", 2, seed=0)
    table = audit_labels(
        out / "labels.csv",
        None,
        ReadOptions(poni=out / "geometry.poni", mask="auto"),
        use_model=False,
    )
    assert not table.errors
    assert len(table.rows) == 2 * len(PHASES)
    no_geometry = audit_labels(out / "labels.csv", use_model=False)
    assert len(no_geometry.errors) == 2 and "--poni" in next(iter(no_geometry.errors.values()))
