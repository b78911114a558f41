"""Adapting a model to labeled patterns: the model folder it writes and what reads it back."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from toymodels import toy_model

from xrdmtl.errors import LabelsError
from xrdmtl.inference.predictor import Predictor
from xrdmtl.io.read import ReadOptions
from xrdmtl.io.readers import load_pattern
from xrdmtl.model.files import load_model
from xrdmtl.workflows.adapt import NetworkTuning, adapt_to_labels


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    src = Path(str(resources.files("xrdmtl") / "data" / "examples"))
    return Path(shutil.copytree(src, tmp_path / "examples"))


def test_adapted_model_round_trips_and_predicts_as_the_adapter_says(tmp_path, examples) -> None:
    base = toy_model(tmp_path / "base")
    out = tmp_path / "adapted"
    report = adapt_to_labels(examples / "labels.csv", out, base, ReadOptions(wavelength=0.561))
    assert len(report.files) == 6 and not report.skipped
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "model.json", "adapter.safetensors",
                                               "audit.csv", "adaptation.json"}  # fmt: skip
    meta = json.loads((out / "model.json").read_text())
    assert meta["adapter"]["n_references"] == 6 - len(report.left_out)
    assert meta["adaptation"]["chosen"]["weight"] == report.chosen.weight
    model = load_model(out)
    assert model.adapter is not None and model.adapter.weight == report.chosen.weight
    np.testing.assert_array_equal(model.adapter.labels, report.adapted.fit.adapter.labels)
    # Predictor uses the adapter unchanged: a labeled pattern with the vote weight 1 gets its labels
    doc = json.loads((out / "model.json").read_text())
    doc["adapter"].update(weight=1.0, k=1, gate=-1.0)
    (out / "model.json").write_text(json.dumps(doc))
    pattern = load_pattern(examples / "hdac_unmasked_xy_r_98.npy", wavelength=0.561)
    (pred,) = Predictor(out).predict_patterns([pattern])
    assert pred.calls == {"bastnaesite": 0, "calcite": 0, "rhenium": 1}


def test_unreadable_labeled_patterns_are_a_clear_error(tmp_path) -> None:
    base = toy_model(tmp_path / "base")
    (tmp_path / "a.xy").write_text("not a pattern\n")
    (tmp_path / "labels.csv").write_text(
        "file,bastnaesite,calcite,rhenium\na.xy,0,0,1\nmissing.xy,1,0,0\n"
    )
    with pytest.raises(LabelsError, match="labeled files could be read"):
        adapt_to_labels(
            tmp_path / "labels.csv", tmp_path / "out", base, ReadOptions(wavelength=0.561)
        )
    assert not (tmp_path / "out" / "model.json").exists()


def test_network_tuning_is_scored_out_of_fold(tmp_path, examples) -> None:
    base = toy_model(tmp_path / "base")
    tuning = NetworkTuning(steps=1, folds=2)
    report = adapt_to_labels(
        examples / "labels.csv",
        tmp_path / "out",
        base,
        ReadOptions(wavelength=0.561),
        tuning=tuning,
    )
    assert len(report.adapted.candidates_tuned) == len(report.adapted.candidates_base)
    assert load_model(tmp_path / "out").adapter is not None


def test_unlabeled_patterns_are_read_and_bad_ones_reported(tmp_path, examples) -> None:
    base = toy_model(tmp_path / "base")
    (tmp_path / "bad.xy").write_text("nothing here\n")
    report = adapt_to_labels(
        examples / "labels.csv", tmp_path / "out", base, ReadOptions(wavelength=0.561),
        unlabeled=[str(examples / "run" / "*.npy"), str(examples / "*.npy"), str(tmp_path / "bad.xy")],
    )  # fmt: skip
    assert any("bad.xy" in line for line in report.skipped)
    meta = json.loads((tmp_path / "out" / "model.json").read_text())
    assert meta["adaptation"]["n_unlabeled"] == 29  # the labeled examples themselves left out
    assert meta["adapter"]["n_references"] == 6 - len(report.left_out) + report.adapted.n_pseudo


def test_labeled_files_are_read_once_for_the_grid_and_the_audit(
    tmp_path, examples, monkeypatch
) -> None:
    """Adapting reads each labeled file once (a frame is integrated once), and the audit's verdicts
    are those of a separate audit of the same CSV."""
    import xrdmtl.workflows.adapt as adapt
    import xrdmtl.workflows.audit as audit
    from xrdmtl.io.read import read_files
    from xrdmtl.workflows.adapt import read_and_audit
    from xrdmtl.workflows.audit import audit_labels

    base = toy_model(tmp_path / "base")
    calls: list[int] = []

    def counted(files, opts):
        calls.append(len(files))
        return read_files(files, opts)

    for module in (adapt, audit):  # the two places that read a labels CSV's files
        monkeypatch.setattr(module, "read_files", counted)
    audited = read_and_audit(examples / "labels.csv", base, ReadOptions(wavelength=0.561))
    assert calls == [6] and len(audited.files) == 6
    alone = audit_labels(
        examples / "labels.csv", None, ReadOptions(wavelength=0.561), use_model=False
    )
    assert audited.audit is not None
    assert set(audited.flagged_files) == {r.file for r in alone.flagged}
