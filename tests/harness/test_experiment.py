"""``xrdmtl experiment`` end to end at toy size: every report table is filled from the runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import check_tables
from typer.testing import CliRunner

from experiments.experiment import (
    ExperimentConfig,
    ExperimentResults,
    hdac_dir,
    run_experiment,
)
from experiments.report import write_report
from xrdmtl.cli.app import app

pytestmark = pytest.mark.slow  # a toy run of the whole experiment (≈ 30 s)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ExperimentResults]:
    out = tmp_path_factory.mktemp("experiment")
    results = run_experiment(out, ExperimentConfig.preset("toy"), progress=False)
    write_report(results, out)
    return out, results


def test_toy_experiment_runs_every_comparison(toy_run: tuple[Path, ExperimentResults]):
    out, results = toy_run
    data = json.loads((out / "results.json").read_text())
    assert data == json.loads(json.dumps(results.data))
    cfg = ExperimentConfig.preset("toy")
    comp = data["comparisons"]
    assert comp["architecture"] == ["mtl", "binary", "paper"]
    assert len(comp["loss"]) >= 2 and comp["plain_loss"] in comp["loss"]
    assert set(comp["masking"]["train"].values()) <= set(data["settings"])
    expected_sets = {"sim_unmasked", "sim_masked", "rruff"} | (
        {"hdac_unmasked", "hdac_masked"} if hdac_dir() else set()
    )
    assert set(data["test_sets"]) == expected_sets
    for s in data["settings"].values():
        assert s["params"] > 0 and s["train_time_s"]["n"] == cfg.seeds
        assert len(s["history"]) == cfg.seeds and all(len(h) > 0 for h in s["history"])
        for t in expected_sets:
            m = s["metrics"][t]
            assert m["exact"]["n"] == cfg.seeds and 0 <= m["exact"]["mean"] <= 1
    for pts in data["data_efficiency"].values():
        assert [p["n"] for p in pts] == [0, *cfg.finetune_ns]
    if hdac_dir():
        assert data["hdac"]["n"] == 29
        for pts in data["hdac"]["cv"].values():
            assert [p["n"] for p in pts] == list(cfg.hdac_ns)
            assert all(p["runs"] == cfg.seeds * cfg.hdac_splits for p in pts)
        # the physics-only audit's verdicts, and the same figures on the labels it does not contradict
        assert "xy_c_62.npy" in data["hdac"]["contradicted"]["masked"]
        for v, pts in data["hdac"]["cv_uncontradicted"].items():
            assert [p["n"] for p in pts] == list(cfg.hdac_ns)
            n_clean = 29 - len(data["hdac"]["contradicted"][v])
            assert data["hdac"]["synthetic_only_uncontradicted"][v]["n"] == n_clean
            base = data["hdac"]["cv_base"][v]  # the base models on each split's held-out patterns
            assert [p["runs"] for p in base] == [p["runs"] for p in pts]
            # adaptation and the nearest-neighbour vote on the very same splits
            for key in ("cv_adapted", "cv_adapted_uncontradicted", "cv_vote"):
                assert [p["runs"] for p in data["hdac"][key][v]] == [p["runs"] for p in pts]
                assert all(0.0 <= p["exact"]["mean"] <= 1.0 for p in data["hdac"][key][v])
    assert data["examples"] and data["meta"]["wall_time_s"] > 0
    assert (out / "runs" / ".gitignore").read_text() == "*\n"


def test_report_tables_are_filled_from_the_runs(toy_run: tuple[Path, ExperimentResults]):
    out, results = toy_run
    md = (out / "report.md").read_text()
    check_tables(md, json.loads((out / "results.json").read_text()))
    html = (out / "report.html").read_text()
    assert "<table>" in html and "data:image/png;base64," in html
    for name in ("fig_learning_curves.png", "fig_data_efficiency.png", "fig_confusion.png"):
        assert (out / name).is_file()


def test_report_regenerates_from_results_json(
    toy_run: tuple[Path, ExperimentResults], tmp_path: Path
):
    out, _ = toy_run
    md = write_report(out / "results.json", tmp_path)
    assert md.read_text() == (out / "report.md").read_text()


def test_cli_reuses_cached_runs(toy_run: tuple[Path, ExperimentResults]):
    out, results = toy_run
    models = sorted((out / "runs").glob("**/model.safetensors"))
    before = [m.stat().st_mtime_ns for m in models]
    r = CliRunner().invoke(app, ["experiment", "--out", str(out), "--toy"])
    assert r.exit_code == 0, r.output
    assert [m.stat().st_mtime_ns for m in models] == before, "cached models were retrained"
    again = json.loads((out / "results.json").read_text())
    assert again["meta"]["command"] == f"xrdmtl experiment --out {out} --toy"
    assert (
        again["settings"]["mtl"]["metrics"]
        == json.loads(json.dumps(results.data))["settings"]["mtl"]["metrics"]
    )
    assert "xrdmtl experiment --out" in (out / "report.md").read_text()
    first = json.loads(json.dumps(results.data))["meta"]["reused_runs"]
    assert first["training_runs"][0] == 0 and first["finetune_runs"][0] == 0
    assert all(k == n > 0 for k, n in again["meta"]["reused_runs"].values())
    assert "were reused from the run cache" in (out / "report.md").read_text()


def test_presets_and_cli_flags(tmp_path: Path):
    toy, quick, full = (ExperimentConfig.preset(n) for n in ("toy", "quick", "full"))
    assert toy.steps < quick.steps < full.steps and quick.seeds >= 3 and full.seeds >= 3
    assert full.finetune_ns == (5, 10, 20, 50, 100) and full.hdac_ns == (5, 10, 20)
    assert ExperimentConfig.preset("quick", seeds=5).seeds == 5
    with pytest.raises(ValueError, match="unknown preset"):
        ExperimentConfig.preset("huge")
    r = CliRunner().invoke(app, ["experiment", "--out", str(tmp_path), "--quick", "--toy"])
    assert r.exit_code != 0 and not (tmp_path / "results.json").exists()


def test_cli_without_the_harness_says_so_in_one_line(monkeypatch, tmp_path: Path):
    """An installed package has no experiments/ beside it: one clear line, nothing written."""
    import xrdmtl.cli.experiment as cli_experiment

    monkeypatch.setattr(cli_experiment, "checkout_root", lambda: tmp_path)
    r = CliRunner().invoke(app, ["experiment", "--out", str(tmp_path / "out"), "--toy"])
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "experiments/" in r.output and "source checkout" in r.output
    assert not (tmp_path / "out").exists()


def test_the_recipe_builds_the_shipped_network():
    """``make model``'s recipe, ``xrdmtl train --arch mtl`` and the shipped model share one network."""
    from experiments.default_model import CONFIG
    from xrdmtl.model.files import default_model_dir, load_model
    from xrdmtl.model.networks import SHIPPED_MTL_KWARGS

    shipped = load_model(default_model_dir()).meta["architecture"]
    assert CONFIG.arch == shipped["name"] == "mtl"
    assert CONFIG.arch_kwargs == SHIPPED_MTL_KWARGS
    assert {k: shipped["kwargs"][k] for k in SHIPPED_MTL_KWARGS} == SHIPPED_MTL_KWARGS
