"""Physical sanity in predictions: a wrong wavelength, gaps, odd data and a broken model are said,
never answered in silence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from clitools import invoke

from xrdmtl.inference.predictor import Predictor
from xrdmtl.physics.grid import QGrid
from xrdmtl.physics.pattern import Pattern
from xrdmtl.physics.phases import get_phase
from xrdmtl.physics.units import tth_to_q

PHASES = ["bastnaesite", "calcite", "rhenium"]
WAVELENGTH = 0.561
TTH = np.arange(3.0, 40.0, 0.01)


class FixedModel:
    """Stand-in model: the same probabilities for every pattern (NaN allowed)."""

    def __init__(self, probs: list[float]) -> None:
        self.phases, self.grid = list(PHASES), QGrid()
        self.meta = {"thresholds": [0.5] * 3}
        self.probs = np.asarray(probs, dtype=np.float32)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.tile(self.probs, (len(x), 1))


def measured(phases: list[str], seed: int = 0) -> np.ndarray:
    """Intensity at :data:`TTH` (2θ at :data:`WAVELENGTH`) of ``phases`` on a background."""
    q = tth_to_q(TTH, WAVELENGTH)
    y = 200.0 + 30.0 * q
    for name in phases:
        refl = get_phase(name).reflections(WAVELENGTH, q_max=6.0)
        for qr, inten in zip(refl.q, refl.intensity, strict=True):
            y = y + 10.0 * inten * np.exp(-0.5 * ((q - qr) / 0.008) ** 2)
    return y + np.random.default_rng(seed).normal(0.0, 2.0, q.size)


@pytest.mark.parametrize("read_at", [0.59, 0.53])
def test_a_wrong_wavelength_says_q_scaled_by_k(read_at: float) -> None:
    y = measured(["calcite"])
    right, wrong = Predictor(FixedModel([0.02, 0.02, 0.02])).predict_patterns(
        [Pattern(TTH, y, "2th_deg", WAVELENGTH), Pattern(TTH, y, "2th_deg", read_at)]
    )
    assert "scaled by k" not in right.warning and right.explanation.q_scale is None
    k = wrong.explanation.q_scale
    assert k == pytest.approx(read_at / WAVELENGTH, abs=0.003), wrong.warning
    assert f"the strong peaks fit calcite with Q scaled by k = {k:.3f}" in wrong.warning
    assert f"λ = {read_at / k:.4g} Å would fit" in wrong.warning
    assert read_at / k == pytest.approx(WAVELENGTH, rel=0.003)


def test_a_pattern_of_another_mineral_is_not_taken_for_a_scaled_one() -> None:
    y = measured(["zircon"]) + measured(["quartz"], seed=1)
    (pred,) = Predictor(FixedModel([0.02, 0.02, 0.02])).predict_patterns(
        [Pattern(TTH, y, "2th_deg", WAVELENGTH)]
    )
    assert pred.explanation.q_scale is None and "scaled by k" not in pred.warning


def test_odd_data_gets_its_warnings() -> None:
    y = measured(["calcite"])
    gap = (TTH < 8.0) | (TTH > 20.0)
    preds = Predictor(FixedModel([0.02, 0.9, 0.02])).predict_patterns(
        [
            Pattern(TTH[gap], y[gap], "2th_deg", WAVELENGTH),
            Pattern(TTH, -y, "2th_deg", WAVELENGTH),
            Pattern(TTH, np.minimum(y, np.quantile(y, 0.999)), "2th_deg", WAVELENGTH),
            Pattern(TTH[::25], y[::25], "2th_deg", WAVELENGTH),
        ]
    )
    assert preds[0].warning.startswith("no data at 2θ 8.00–20.0"), preds[0].warning
    assert "(a gap in x: not interpolated" in preds[0].warning
    assert "sign-flipped" in preds[1].warning
    assert "flat top" in preds[2].warning
    assert "too coarse" in preds[3].warning


def test_a_non_finite_model_output_is_an_error_for_that_pattern() -> None:
    pattern = Pattern(TTH, measured(["calcite"]), "2th_deg", WAVELENGTH, source="a.xy")
    (pred,) = Predictor(FixedModel([0.1, float("nan"), 0.2])).predict_patterns([pattern])
    assert not pred.ok and pred.error.startswith("a.xy: the model's output is not a number")
    assert pred.calls == {} and pred.probabilities == {}


def test_huge_intensities_answer_as_the_pattern_does() -> None:
    y = measured(["calcite"])
    model = Predictor(FixedModel([0.1, 0.9, 0.2]))
    plain, huge = model.predict_patterns(
        [Pattern(TTH, y, "2th_deg", WAVELENGTH), Pattern(TTH, y * 1e300, "2th_deg", WAVELENGTH)]
    )
    assert huge.ok and huge.warning == plain.warning
    np.testing.assert_allclose(huge.explanation.peaks, plain.explanation.peaks, rtol=1e-4)


def _strict(text: str) -> object:
    def refuse(token: str) -> None:
        raise AssertionError(f"bare {token} in JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_damaged_model_gives_errors_and_valid_json(tmp_path: Path) -> None:
    import torch
    from toymodels import toy_model

    folder = toy_model(tmp_path / "model")
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    name = next(k for k, v in weights.items() if v.is_floating_point() and v.numel() > 1)
    weights[name] = weights[name].clone()
    weights[name].view(-1)[0] = float("nan")  # one damaged weight
    save_file(weights, str(folder / "model.safetensors"))
    np.save(tmp_path / "p.npy", np.stack([TTH, measured(["calcite"])]))
    res = invoke("predict", tmp_path / "p.npy", "-m", folder, "-w", WAVELENGTH, "--json")
    assert res.exit_code == 1, res.output
    doc = _strict(res.stdout)
    (row,) = doc["predictions"]
    assert "not a number" in row["error"] and row["probabilities"] == {}
    assert torch.isnan(weights[name]).any()


def test_predict_says_the_file_unit_won_over_the_option(tmp_path: Path) -> None:
    import csv
    import io

    from toymodels import toy_model

    q = tth_to_q(TTH, WAVELENGTH)
    lines = ["# q_A^-1  I"] + [
        f"{a:.6f} {b:.3f}" for a, b in zip(q, measured(["calcite"]), strict=True)
    ]
    (tmp_path / "q.xy").write_text("\n".join(lines) + "\n")
    model = toy_model(tmp_path / "model")
    res = invoke("predict", tmp_path / "q.xy", "-m", model, "--x-unit", "2th_deg", "-w", "0.561")
    assert res.exit_code == 0, res.output
    (row,) = csv.DictReader(io.StringIO(res.stdout))
    assert row["x_unit"] == "q_A^-1"
    assert row["warning"].startswith(
        "the file states x in q_A^-1, used instead of --x-unit 2th_deg"
    )
