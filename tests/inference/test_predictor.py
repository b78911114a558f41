"""Prediction: batched calls, warnings, files in parallel and on Dask, the CSV, and evaluate's metrics."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from xrdmtl.cli.app import app
from xrdmtl.errors import LabelsError
from xrdmtl.inference.predictor import Predictor
from xrdmtl.inference.results import Flag
from xrdmtl.io.labels import read_labels
from xrdmtl.io.read import ReadOptions
from xrdmtl.io.writers import csv_header
from xrdmtl.model.files import save_model
from xrdmtl.model.metrics import accuracy, exact_match, precision_recall_f1, roc_auc
from xrdmtl.model.networks import MultiTaskCNN
from xrdmtl.physics.grid import QGrid
from xrdmtl.physics.pattern import Pattern
from xrdmtl.physics.phases import get_phase

PHASES = ["bastnaesite", "calcite", "rhenium"]
HEADER = (
    "file,p_bastnaesite,p_calcite,p_rhenium,bastnaesite,calcite,rhenium,warning,error,"
    "wavelength,wavelength_source,x_unit"
)
CELLS = [f"{p}_{f}" for p in PHASES for f in ("a", "a_err", "c", "c_err")]
WAVELENGTH = 0.561


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small randomly initialised multi-task model saved as a model folder."""
    import torch

    torch.manual_seed(0)
    net = MultiTaskCNN(PHASES, channels=(4, 8), kernels=(5, 3), hidden=8)
    return save_model(tmp_path_factory.mktemp("model") / "tiny", net)


class FixedModel:
    """Stand-in model that returns the same probabilities for every pattern."""

    def __init__(self, probs: list[float], grid: QGrid | None = None) -> None:
        self.phases = list(PHASES)
        self.grid = grid or QGrid()
        self.meta = {"thresholds": [0.5] * 3}
        self.probs = np.asarray(probs, dtype=np.float32)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.tile(self.probs, (len(x), 1))


def phase_pattern(phases: list[str], extra_q: tuple[float, ...] = (), seed: int = 0) -> Pattern:
    """A Q-space pattern: sloped background, the phases' reflections as Gaussians, extra peaks, noise."""
    rng = np.random.default_rng(seed)
    q = np.linspace(0.7, 5.2, 4000)
    y = 200.0 + 30.0 * q
    for name in phases:
        refl = get_phase(name).reflections(None, q_max=5.2)
        for qr, inten in zip(refl.q, refl.intensity, strict=True):
            y += 10.0 * inten * np.exp(-0.5 * ((q - qr) / 0.008) ** 2)
    for qe in extra_q:
        y += 800.0 * np.exp(-0.5 * ((q - qe) / 0.008) ** 2)
    y += rng.normal(0.0, 2.0, q.size)
    return Pattern(q, y, unit="q_A^-1", source="+".join(phases) or "none")


def write_npy_patterns(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` 2×N .npy files in 2θ (λ = 0.561 Å) with random mixtures of the targets."""
    from xrdmtl.physics.units import q_to_tth

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        chosen = [p for p in PHASES if rng.random() < 0.5]
        pat = phase_pattern(chosen, seed=seed + i)
        tth = q_to_tth(pat.x, WAVELENGTH)
        ok = np.isfinite(tth)
        path = folder / f"p{i:03d}.npy"
        np.save(path, np.stack([tth[ok], pat.y[ok]]))
        paths.append(path)
    return paths


def read_csv_text(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# --------------------------------------------------------------------------- Predictor


def test_predict_patterns_batched(tiny_model: Path) -> None:
    pred = Predictor(tiny_model)
    pats = [phase_pattern(["calcite"]), phase_pattern(["rhenium"], seed=1)]
    out = pred.predict_patterns(pats, explain=True)
    assert [p.file for p in out] == ["calcite", "rhenium"]
    for p in out:
        assert p.ok and list(p.probabilities) == PHASES and set(p.calls.values()) <= {0, 1}
        assert all(0.0 <= v <= 1.0 for v in p.probabilities.values())
        assert set(p.explanation.saliency) == set(PHASES)
        assert p.explanation.saliency["calcite"].shape == (pred.grid.n,)
        assert np.abs(p.explanation.saliency["calcite"]).max() <= 1.0 + 1e-6
    # calcite's strongest reflection (104, Q ≈ 2.07 Å⁻¹) is among the matched peaks of the calcite pattern
    assert any(abs(q - 2.07) < 0.02 for q in out[0].explanation.matched["calcite"])
    # the threshold option decides the calls
    low = Predictor(tiny_model, threshold=0.01).predict_patterns(pats)
    assert all(all(v == 1 for v in p.calls.values()) for p in low)


def test_unknown_phase_warning() -> None:
    pred = Predictor(FixedModel([0.02, 0.98, 0.02]), verify=False)
    clean, dirty = pred.predict_patterns(
        [phase_pattern(["calcite"]), phase_pattern(["calcite"], extra_q=(1.35, 3.62), seed=3)]
    )
    assert clean.calls == {"bastnaesite": 0, "calcite": 1, "rhenium": 0}
    assert Flag.UNEXPLAINED_PEAKS not in clean.flags, clean.warning
    assert Flag.UNEXPLAINED_PEAKS in dirty.flags, dirty.warning
    assert "unexplained peaks at Q=1.35, 3.62" in dirty.warning  # the text names them
    assert [round(q, 2) for q in dirty.explanation.unexplained] == [1.35, 3.62]
    # nothing called: the calcite peaks themselves are unexplained
    none_called = Predictor(FixedModel([0.02, 0.02, 0.02]), verify=False).predict_patterns(
        [phase_pattern(["calcite"])]
    )[0]
    assert Flag.UNEXPLAINED_PEAKS in none_called.flags
    # a featureless pattern gives no peak warning (noise is not a phase)
    rng = np.random.default_rng(1)
    q = np.linspace(0.7, 5.2, 3000)
    flat = Pattern(q, 100 + rng.normal(0, 1.0, q.size), unit="q_A^-1")
    quiet = Predictor(FixedModel([0.02, 0.02, 0.02]), verify=False).predict_patterns([flat])[0]
    assert Flag.UNEXPLAINED_PEAKS not in quiet.flags and quiet.explanation.unexplained == []


def test_call_without_peak_evidence_is_flagged() -> None:
    pred = Predictor(FixedModel([0.02, 0.98, 0.02]), verify=False)
    backed, bare = pred.predict_patterns(
        [phase_pattern(["calcite"]), phase_pattern([], extra_q=(1.35,))]
    )
    assert Flag.NO_EVIDENCE not in backed.flags, backed.warning
    assert bare.flagged(Flag.NO_EVIDENCE) == ["calcite"], bare.warning
    assert "called without a peak at any of its reflections: calcite" in bare.warning
    assert bare.calls["calcite"] == 1  # a warning, not a veto


def test_guard_withholds_a_call_the_peaks_do_not_support() -> None:
    """A call resting on one coincident line (calcite 104 at Q 2.07 Å⁻¹) of a mineral the model does
    not know, whose three other strong lines stay unexplained, is withheld with a warning; the
    probability stays. A real phase keeps its call, and ``guard=False`` keeps every call."""
    unknown = phase_pattern([], extra_q=(1.35, 1.56, 2.07, 3.62))
    real = phase_pattern(["calcite"], extra_q=(1.35, 3.62))
    out = Predictor(FixedModel([0.02, 0.93, 0.02]), verify=False).predict_patterns([unknown, real])
    assert out[0].calls["calcite"] == 0 and out[0].probabilities["calcite"] == pytest.approx(0.93)
    assert out[0].flagged(Flag.WITHHELD) == ["calcite"], out[0].warning
    assert "calcite p=0.93" in out[0].warning
    assert [round(q, 2) for q in out[0].explanation.unexplained] == [1.35, 1.56, 2.07, 3.62]
    assert out[1].calls["calcite"] == 1 and Flag.WITHHELD not in out[1].flags
    unguarded = Predictor(FixedModel([0.02, 0.93, 0.02]), guard=False, verify=False)
    assert unguarded.predict_patterns([unknown])[0].calls["calcite"] == 1


def test_uncertain_and_coverage_checks() -> None:
    pred = Predictor(FixedModel([0.55, 0.98, 0.02]), verify=False)
    p = pred.predict_patterns([phase_pattern(["calcite"])])[0]
    assert p.flagged(Flag.UNCERTAIN) == ["bastnaesite"], p.warning
    assert "uncertain (p near the threshold): bastnaesite p=0.55" in p.warning
    q = np.linspace(4.4, 5.2, 500)  # 14% of the 0.8–5.0 grid
    narrow = Pattern(q, 100 + np.sin(q * 40) ** 2, unit="q_A^-1", source="narrow.xy")
    bad = pred.predict_patterns([narrow])[0]
    assert not bad.ok and "covers only" in bad.error and bad.error.startswith("narrow.xy")
    assert bad.probabilities == {}


# --------------------------------------------------------------------------- files and CLI


def test_cli_predict_folder_with_corrupt_file(tiny_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_npy_patterns(data, 3)
    (data / "corrupt.xy").write_text("this is not\na diffraction pattern\n")
    out = tmp_path / "out" / "preds.csv"
    res = CliRunner().invoke(
        app,
        [
            "predict",
            str(data),
            "--model",
            str(tiny_model),
            "--out",
            str(out),
            "--wavelength",
            str(WAVELENGTH),
            "--workers",
            "1",
        ],
    )
    assert res.exit_code == 1, res.output
    text = out.read_text()
    assert (
        text.splitlines()[0].split(",") == HEADER.split(",") + CELLS
    )  # the check is on by default
    rows = read_csv_text(text)
    assert len(rows) == 4
    bad = [r for r in rows if r["error"]]
    assert (
        len(bad) == 1 and bad[0]["file"].endswith("corrupt.xy") and "corrupt.xy" in bad[0]["error"]
    )
    assert bad[0]["p_calcite"] == "" and bad[0]["calcite"] == ""
    good = [r for r in rows if not r["error"]]
    assert all(r["calcite"] in ("0", "1") and 0 <= float(r["p_calcite"]) <= 1 for r in good)
    assert "corrupt.xy" in res.stderr
    assert not list(out.parent.glob(".*.tmp"))  # atomic write left no temporary file


def test_cli_predict_stdout_and_plots(tiny_model: Path, tmp_path: Path) -> None:
    files = write_npy_patterns(tmp_path / "data", 2)
    plots = tmp_path / "plots"
    res = CliRunner().invoke(
        app,
        [
            "predict",
            *map(str, files),
            "--model",
            str(tiny_model),
            "--wavelength",
            str(WAVELENGTH),
            "--plot",
            str(plots),
            "--workers",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0].split(",") == HEADER.split(",") + CELLS
    assert len(read_csv_text(res.stdout)) == 2
    assert sorted(p.name for p in plots.glob("*.png")) == ["p000.png", "p001.png"]
    assert csv_header(PHASES) == HEADER.split(",")
    assert csv_header(PHASES, cells=True) == HEADER.split(",") + CELLS  # the default (verified)


def test_predict_files_takes_reading_options_as_one_object(
    tiny_model: Path, tmp_path: Path
) -> None:
    files = write_npy_patterns(tmp_path / "data", 2)
    pred = Predictor(tiny_model)
    with pytest.raises(TypeError, match=r"ReadOptions\(wavelength="):
        pred.predict_files(files, WAVELENGTH, workers=1, progress=False)  # type: ignore[arg-type]
    preds = pred.predict_files(files, ReadOptions(WAVELENGTH), workers=1, progress=False)
    assert [p.ok for p in preds] == [True, True] and preds[0].wavelength == WAVELENGTH


def test_process_pool_and_dask_match_serial(tiny_model: Path, tmp_path: Path) -> None:
    from distributed import Client

    files = write_npy_patterns(tmp_path / "data", 20)
    files.insert(5, tmp_path / "data" / "missing.npy")
    pred = Predictor(tiny_model)
    serial = pred.predict_files(
        files, ReadOptions(wavelength=WAVELENGTH), workers=1, progress=False, expand=False
    )
    pooled = pred.predict_files(
        files, ReadOptions(wavelength=WAVELENGTH), workers=2, progress=False, expand=False
    )
    with Client(
        processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None
    ) as client:
        dasked = pred.predict_files(
            files,
            ReadOptions(wavelength=WAVELENGTH),
            workers=2,
            progress=False,
            expand=False,
            scheduler=client,
        )
    for other in (pooled, dasked):
        assert [p.file for p in other] == [p.file for p in serial]
        assert [p.calls for p in other] == [p.calls for p in serial]
        assert [p.warning for p in other] == [p.warning for p in serial]
        assert [p.error for p in other] == [p.error for p in serial]
        np.testing.assert_allclose(
            [list(p.probabilities.values()) for p in other if p.ok],
            [list(p.probabilities.values()) for p in serial if p.ok],
            atol=1e-6,
        )
    assert sum(not p.ok for p in serial) == 1 and "missing.npy" in serial[5].error


def test_frame_without_geometry_is_a_clear_error(tiny_model: Path, tmp_path: Path) -> None:
    frame = tmp_path / "frame.edf"
    frame.write_bytes(b"\x00" * 64)
    (p,) = Predictor(tiny_model).predict_files([frame], workers=1, progress=False)
    assert not p.ok and "--poni" in p.error


# --------------------------------------------------------------------------- labels and evaluate


def test_read_labels(tmp_path: Path) -> None:
    f = tmp_path / "labels.csv"
    f.write_text("file,calcite,bastnaesite,rhenium,quartz\nsub/a.npy,1,0,0,1\nb.xy,0,1,1,0\n")
    notes: list[str] = []
    files, labels = read_labels(f, PHASES, note=notes.append)
    assert files == [str(tmp_path / "sub" / "a.npy"), str(tmp_path / "b.xy")]
    assert labels.tolist() == [[0, 1, 0], [1, 0, 1]] and labels.dtype == np.uint8
    assert len(notes) == 1 and "quartz" in notes[0]
    f.write_text("file,calcite,bastnaesite\na.npy,1,0\n")
    with pytest.raises(LabelsError, match="rhenium"):
        read_labels(f, PHASES)
    f.write_text("file,calcite,bastnaesite,rhenium\na.npy,1,yes,0\n")
    with pytest.raises(LabelsError, match="line 2"):
        read_labels(f, PHASES)


def test_metrics_on_a_toy() -> None:
    labels = np.array([[1, 0], [1, 1], [0, 0], [0, 1]])
    calls = np.array([[1, 0], [0, 1], [0, 1], [0, 1]])
    scores = np.array([[0.9, 0.1], [0.4, 0.8], [0.2, 0.6], [0.3, 0.7]])
    np.testing.assert_allclose(accuracy(labels, calls), [0.75, 0.75])
    assert exact_match(labels, calls) == 0.5
    precision, recall, f1 = precision_recall_f1(labels, calls)
    np.testing.assert_allclose(precision, [1.0, 2 / 3])
    np.testing.assert_allclose(recall, [0.5, 1.0])
    np.testing.assert_allclose(f1, [2 / 3, 0.8])
    # phase 0: positives 0.9, 0.4 vs negatives 0.2, 0.3 → all 4 pairs ordered: AUC 1
    # phase 1: positives 0.8, 0.7 vs negatives 0.1, 0.6 → 4/4 pairs; with a tie it counts half
    np.testing.assert_allclose(roc_auc(labels, scores), [1.0, 1.0])
    np.testing.assert_allclose(
        roc_auc(np.array([[1], [0], [1]]), np.array([[0.5], [0.5], [0.2]])), [0.25]
    )
    assert np.isnan(roc_auc(np.array([[1], [1]]), np.array([[0.3], [0.9]]))[0])


def test_cli_evaluate_json(tiny_model: Path, tmp_path: Path) -> None:
    files = write_npy_patterns(tmp_path / "data", 4)
    lines = ["file,bastnaesite,calcite,rhenium,quartz"]
    lines += [f"data/{f.name},1,0,0,0" for f in files]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    args = [
        "evaluate",
        "--labels",
        str(tmp_path / "labels.csv"),
        "--model",
        str(tiny_model),
        "--wavelength",
        str(WAVELENGTH),
        "--workers",
        "1",
    ]
    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result["n"] == 4 and set(result["phases"]) == set(PHASES)
    assert {"accuracy", "f1", "roc_auc", "precision", "recall"} <= set(result["phases"]["calcite"])
    assert 0.0 <= result["exact_match"] <= 1.0
    assert all(m["file"].startswith("data/") for m in result["misclassified"])
    assert "quartz" in res.stderr
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0 and "exact match" in table.stdout
    raw = CliRunner().invoke(app, [*args, "--json", "--no-guard"])  # the network's calls, unguarded
    assert raw.exit_code == 0 and json.loads(raw.stdout)["n"] == 4, raw.output
    (tmp_path / "labels.csv").write_text("file,calcite\nx.npy,1\n")
    missing = CliRunner().invoke(app, [*args, "--json"])
    assert missing.exit_code == 2 and "bastnaesite" in missing.stderr


def test_cli_predict_frame_stack(tiny_model: Path, tmp_path: Path) -> None:
    """An HDF5 stack with a geometry: one row per frame, plots with a timeline, integrated patterns."""
    import h5py
    from pyFAI.detectors import Detector
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    from xrdmtl.io.readers import load_pattern

    det = Detector(pixel1=172e-6, pixel2=172e-6, max_shape=(96, 96))
    ai = AzimuthalIntegrator(
        dist=0.02, poni1=0.0083, poni2=0.0083, detector=det, wavelength=WAVELENGTH * 1e-10
    )
    ai.save(str(tmp_path / "geometry.poni"))
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "run.h5", "w") as f:
        f["entry/data/data"] = rng.poisson(100, (3, 96, 96)).astype(np.int32)
    out, plots, integrated = tmp_path / "preds.csv", tmp_path / "plots", tmp_path / "integrated"
    res = CliRunner().invoke(
        app,
        [
            "predict",
            str(tmp_path / "run.h5"),
            "--poni",
            str(tmp_path / "geometry.poni"),
            "--model",
            str(tiny_model),
            "--out",
            str(out),
            "--plot",
            str(plots),
            "--save-integrated",
            str(integrated),
            "--workers",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    rows = read_csv_text(out.read_text())
    assert [r["file"] for r in rows] == [f"{tmp_path / 'run.h5'}::{i}" for i in range(3)]
    assert sorted(p.name for p in plots.glob("*.png")) == [
        "run_00000.png",
        "run_00001.png",
        "run_00002.png",
        "timeline.png",
    ]
    saved = sorted(integrated.glob("*.xy"))
    assert len(saved) == 3
    pattern = load_pattern(saved[0])
    assert pattern.unit == "2th_deg" and abs(pattern.wavelength - WAVELENGTH) < 1e-6
