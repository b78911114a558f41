"""Training, resume, fine-tuning and calibration, on a tiny stand-in generator (fast)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from safetensors.numpy import load_file

from xrdmtl.io.labels import LabeledPatterns
from xrdmtl.model.calibration import expected_calibration_error, fit_temperature
from xrdmtl.model.files import load_model
from xrdmtl.model.preprocess import model_input
from xrdmtl.physics.grid import QGrid
from xrdmtl.training.finetune import finetune
from xrdmtl.training.train import TrainConfig, augment, train

GRID = QGrid(0.8, 5.0, 256)
PEAKS = {"a": (1.2, 2.0, 3.1), "b": (1.5, 2.6, 4.4)}
TINY = {"channels": [8, 16, 16], "kernels": [3, 3, 3], "fold": 4, "hidden": 16}
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "hdac"


class ToySynth:
    """Two phases, three Gaussian peaks each (shifted by up to 1 %), on a sloped noisy background."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.grid = GRID
        self.targets = [SimpleNamespace(name=n) for n in PEAKS]
        self.calls, self.fail_at = 0, fail_at

    def sample(self, n: int, rng: np.random.Generator) -> SimpleNamespace:
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError("interrupted")
        q = GRID.values
        labels = (rng.random((n, 2)) < 0.5).astype(np.uint8)
        y = 50 + 20 * rng.random((n, 1)) * q + rng.normal(0, 2, (n, q.size))
        for t, centers in enumerate(PEAKS.values()):
            shift = 1 + rng.uniform(-0.01, 0.01, (n, 1, 1))
            c = np.array(centers)[None, None, :] * shift
            peaks = 30 * np.exp(-0.5 * ((q[None, :, None] - c) / 0.02) ** 2).sum(2)
            y += labels[:, t : t + 1] * peaks
        return SimpleNamespace(
            intensity=y.astype(np.float32), coverage=np.ones_like(y, bool), labels=labels
        )


def _config(**kw) -> TrainConfig:
    base = dict(
        phases=list(PEAKS), arch_kwargs=TINY, loss="ce", steps=150, batch_size=32, lr=3e-3,
        warmup=10, val_size=200, calib_size=200, eval_every=50, patience=0, workers=0,
        threads=1, device="cpu", grid=GRID.to_dict(),
    )  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_tiny_model_beats_chance(tmp_path) -> None:
    result = train(_config(), tmp_path / "m", progress=False, synthesizer=ToySynth())
    last = result.evals[-1]
    assert last["val_acc_a"] > 0.9 and last["val_acc_b"] > 0.9 and last["val_exact"] > 0.8
    for name in ("model.safetensors", "model.json", "metrics.json", "metrics.csv", "curves.png"):
        assert (tmp_path / "m" / name).is_file()
    model = load_model(tmp_path / "m", device="cpu")
    assert model.phases == ["a", "b"]
    meta = model.meta
    assert meta["training"]["config"]["seed"] == 0 and meta["training"]["steps_run"] == 150
    assert len(meta["calibration"]["temperature"]) == 2
    held_out = ToySynth().sample(300, np.random.default_rng(123))
    x = model_input(held_out.intensity, held_out.coverage, GRID.step)
    calls = model.predict_proba(x) > 0.5
    assert (calls == held_out.labels.astype(bool)).mean() > 0.9


def test_same_seed_same_model(tmp_path) -> None:
    cfg = _config(steps=20, eval_every=10)
    train(cfg, tmp_path / "a", progress=False, synthesizer=ToySynth())
    train(cfg, tmp_path / "b", progress=False, synthesizer=ToySynth())
    wa, wb = (load_file(str(tmp_path / d / "model.safetensors")) for d in "ab")
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)


def test_resume_after_interruption_matches_uninterrupted(tmp_path) -> None:
    cfg = _config(steps=40, eval_every=10, arch="mtl", loss="uncertainty")
    full = train(cfg, tmp_path / "full", progress=False, synthesizer=ToySynth())
    # calls: 1 validation set, then one per batch; fail while drawing batch 26 (after the step-20 checkpoint)
    with pytest.raises(RuntimeError, match="interrupted"):
        train(cfg, tmp_path / "cut", progress=False, synthesizer=ToySynth(fail_at=27))
    state = json.loads((tmp_path / "cut" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 20
    resumed = train(cfg, tmp_path / "cut", progress=False, resume=True, synthesizer=ToySynth())
    assert [h[0] for h in resumed.history] == list(range(1, 41))
    assert resumed.history == full.history
    wf, wr = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("full", "cut"))
    assert all(np.array_equal(wf[k], wr[k]) for k in wf)


def test_background_workers_give_the_same_batches(tmp_path) -> None:
    cfg = _config(steps=6, eval_every=3)
    inline = train(cfg, tmp_path / "a", progress=False, synthesizer=ToySynth())
    procs = train(
        _config(steps=6, eval_every=3, workers=2),
        tmp_path / "b",
        progress=False,
        synthesizer=ToySynth(),
    )
    np.testing.assert_allclose(
        [h[1] for h in inline.history], [h[1] for h in procs.history], rtol=1e-4
    )


def test_finetune_on_a_few_patterns(tmp_path) -> None:
    train(
        _config(steps=30, eval_every=30), tmp_path / "base", progress=False, synthesizer=ToySynth()
    )
    real = ToySynth().sample(6, np.random.default_rng(5))
    labeled = LabeledPatterns(real.intensity, real.coverage, real.labels)
    result = finetune(
        tmp_path / "base", labeled, tmp_path / "ft", steps=20, batch_size=16, seed=1,
        workers=0, threads=1, progress=False, synthesizer=ToySynth(),
    )  # fmt: skip
    model = load_model(tmp_path / "ft", device="cpu")
    assert model.phases == ["a", "b"] and len(result.history) == 20
    info = model.meta["training"]["finetune"]
    assert info["n_labeled"] == 6 and "labeled_after" in info


def test_augment_keeps_shape_and_coverage() -> None:
    real = ToySynth().sample(4, np.random.default_rng(0))
    out, cov = augment(real.intensity, real.coverage, np.random.default_rng(1))
    assert out.shape == real.intensity.shape and cov.dtype == bool
    assert cov[:, : GRID.n - 2].all() and np.isfinite(out).all()


def test_temperature_scaling_reduces_ece() -> None:
    rng = np.random.default_rng(0)
    margin = rng.normal(0, 2, (4000, 2))
    labels = (rng.random((4000, 2)) < 1 / (1 + np.exp(-margin))).astype(np.uint8)
    over = np.stack([np.zeros_like(margin), 4 * margin], axis=-1)  # 4× over-confident logits
    temperature = fit_temperature(over, labels)
    np.testing.assert_allclose(temperature, 4.0, rtol=0.2)
    before = expected_calibration_error(1 / (1 + np.exp(-4 * margin)), labels)
    after = expected_calibration_error(1 / (1 + np.exp(-4 * margin / temperature)), labels)
    assert after < before / 2


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/hdac")
def test_cli_train_and_finetune_on_measured_patterns(tmp_path) -> None:
    from typer.testing import CliRunner

    from xrdmtl.cli.app import app

    rows = (SHARED / "labels_unmasked.csv").read_text().splitlines()
    csv = tmp_path / "labels.csv"
    csv.write_text(
        "\n".join(
            [rows[0] + ",quartz"]
            + [f"{SHARED / r.split(',')[0]},{r.split(',', 1)[1]},0" for r in rows[1:4]]
        )
        + "\n"
    )
    runner = CliRunner()
    res = runner.invoke(
        app, ["train", "--out", str(tmp_path / "m"), "--steps", "4", "--val-size", "64"]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app, ["finetune", "--model", str(tmp_path / "m"), "--labels", str(csv), "--out", str(tmp_path / "ft"),
              "--wavelength", "0.561", "--steps", "3"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "quartz" in res.output
    assert json.loads((tmp_path / "ft" / "adaptation.json").read_text())["n_labeled"] == 3
    load_model(tmp_path / "ft")  # an adapted model folder loads like any other


def test_cli_train_tracks_labeled_frames_with_geometry(tmp_path) -> None:
    """``train --labels`` reads frames like every other command: ``--poni`` and ``--mask``."""
    from typer.testing import CliRunner

    from xrdmtl.cli.app import app
    from xrdmtl.synthesis.frames import simulate_frames

    sim = simulate_frames(tmp_path / "sim", 2, seed=0)
    args = ["train", "--out", str(tmp_path / "m"), "--steps", "2", "--eval-every", "2", "--val-size", "32",
            "--labels", str(sim / "labels.csv")]  # fmt: skip
    res = CliRunner().invoke(app, [*args, "--poni", str(sim / "geometry.poni"), "--mask", "auto"])
    assert res.exit_code == 0, res.output
    last = json.loads((tmp_path / "m" / "metrics.json").read_text())["evals"][-1]
    assert 0.0 <= last["labeled_exact"] <= 1.0
    no_geometry = CliRunner().invoke(app, [*args[:2], str(tmp_path / "m2"), *args[3:]])
    assert "--poni" in no_geometry.output


def test_train_config_from_dict_rejects_unknown_keys() -> None:
    assert TrainConfig.from_dict({"steps": 3}).steps == 3
    with pytest.raises(ValueError, match="stpes"):
        TrainConfig.from_dict({"stpes": 3})


def test_cli_train_lattice_range_sets_the_synthesis_coverage(tmp_path) -> None:
    """``train --lattice-range`` widens the synthesis; ``--arch mtl`` is the shipped model's network."""
    from typer.testing import CliRunner

    from xrdmtl.cli.app import app
    from xrdmtl.model.networks import SHIPPED_MTL_KWARGS

    args = ["train", "--out", str(tmp_path / "m"), "--steps", "2", "--eval-every", "2", "--val-size", "32",
            "--lattice-range", "0.97", "1.03"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    meta = load_model(tmp_path / "m").meta
    assert meta["training"]["config"]["synth"]["lattice_coverage"] == [0.97, 1.03]
    network = meta["architecture"]["kwargs"]
    assert network["channels"] == SHIPPED_MTL_KWARGS["channels"] == [24, 48, 64, 96, 128, 160]
    bad = CliRunner().invoke(
        app, ["train", "--out", str(tmp_path / "m2"), "--lattice-range", "1.01", "1.03"]
    )
    assert bad.exit_code != 0 and "lattice_coverage needs" in bad.output, bad.output
