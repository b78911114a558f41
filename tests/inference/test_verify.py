"""Propose and verify: a few-crystal phase the network misses is called, a coincident line calls
nothing, and the refined cells reach the CSV only for called phases."""

from __future__ import annotations

import numpy as np
import pytest

from xrdmtl.inference.predictor import Predictor
from xrdmtl.inference.verify import Verifier, check_grid
from xrdmtl.model.preprocess import model_input
from xrdmtl.physics.grid import QGrid
from xrdmtl.physics.pattern import Pattern
from xrdmtl.physics.phases import get_phase
from xrdmtl.physics.refine import PhaseLines

GRID = QGrid()
PHASES = ["bastnaesite", "calcite", "rhenium"]


def model_x(lines: list[tuple[np.ndarray, np.ndarray]], seed: int = 0) -> np.ndarray:
    """Model input of one pattern on GRID: Gaussian lines (positions, heights; FWHM 0.012 Å⁻¹) on
    a sloped background with Poisson noise."""
    rng = np.random.default_rng(seed)
    q = GRID.values
    y = 2000.0 - 150.0 * q
    for pos, height in lines:
        y = y + (height[:, None] * np.exp(-4 * np.log(2) * ((q - pos[:, None]) / 0.012) ** 2)).sum(
            0
        )
    y = rng.normal(y, np.sqrt(y))
    return model_input(y[None], np.ones((1, GRID.n), bool), GRID.step)


def test_a_few_crystal_phase_the_network_misses_is_called() -> None:
    calcite = PhaseLines.build(get_phase("calcite"), GRID)
    rng = np.random.default_rng(3)
    on_grid = np.flatnonzero(calcite.q0 < GRID.q_max)
    kept = rng.choice(on_grid, 14, replace=False)  # half its lines missing, the rest erratic
    x = model_x([(calcite.q0[kept] * 0.995, rng.uniform(150.0, 900.0, kept.size))])
    probs = np.array([[0.01, 0.02, 0.01]])
    final, (check,) = Verifier(PHASES, GRID).check(x, probs)
    assert final[0, 1] >= 0.9, check.phases["calcite"]
    assert final[0, 0] < 0.5 and final[0, 2] < 0.5
    assert len(check.phases["calcite"].support) >= 10


def test_a_single_coincident_line_makes_no_call() -> None:
    """Bastnaesite 300 sits on rhenium 101: a bastnaesite powder neither makes rhenium when the
    network doubts it nor keeps a confident network call of it."""
    bastnaesite = PhaseLines.build(get_phase("bastnaesite"), GRID)
    x = model_x([(bastnaesite.q0, 8.0 * bastnaesite.intensity)])
    verifier = Verifier(PHASES, GRID)
    doubting, _ = verifier.check(x, np.array([[0.95, 0.02, 0.1]]))
    confident, (check,) = verifier.check(x, np.array([[0.95, 0.02, 0.95]]))
    assert doubting[0, 2] < 0.5 and confident[0, 2] < 0.5, check.phases["rhenium"]
    assert doubting[0, 0] > 0.9


class _Network:
    """Stand-in network: the same probabilities for every pattern."""

    def __init__(self, probs: list[float]) -> None:
        self.phases, self.grid = list(PHASES), GRID
        self.meta = {"thresholds": [0.5] * 3}
        self.probs = np.asarray(probs, dtype=np.float32)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.tile(self.probs, (len(x), 1))


def test_refined_cell_columns_only_for_called_phases() -> None:
    calcite = get_phase("calcite").reflections(None, q_max=5.2)
    q = np.linspace(0.7, 5.2, 4000)
    y = 500.0 + (
        4.0
        * calcite.intensity[:, None]
        * np.exp(-0.5 * ((q - calcite.q[:, None] / 1.01) / 0.006) ** 2)
    ).sum(0)
    pattern = Pattern(q, np.random.default_rng(0).normal(y, np.sqrt(y)), unit="q_A^-1", source="c")
    (pred,) = Predictor(_Network([0.02, 0.97, 0.02])).predict_patterns(
        [pattern]
    )  # default: checked
    row = dict(
        zip(
            PHASES, [pred.row(PHASES, True)[-12:][4 * k : 4 * k + 4] for k in range(3)], strict=True
        )
    )
    assert pred.found == ["calcite"]
    assert row["bastnaesite"] == ["", "", "", ""] and row["rhenium"] == ["", "", "", ""]
    a, a_err, c, c_err = (float(v) for v in row["calcite"])
    assert abs(a / (4.99 * 1.01) - 1) < 0.002 and abs(c / (17.0615 * 1.01) - 1) < 0.002
    assert 0 < a_err < 0.01 and 0 < c_err < 0.05
    (plain,) = Predictor(_Network([0.02, 0.97, 0.02]), verify=False).predict_patterns([pattern])
    assert (
        plain.verification is None
        and plain.row(PHASES, True)[-12:] == [""] * 12
        and len(plain.row(PHASES)) == 12
    )
    assert plain.to_dict()["verification"] is None and pred.to_dict()["verification"]["calcite"]


def test_the_plot_shows_the_fit_its_residual_and_the_refined_lines() -> None:
    from xrdmtl.inference.verify import fitted_curve, refined_sticks
    from xrdmtl.io.plots import pattern_figure

    calcite = PhaseLines.build(get_phase("calcite"), GRID)
    x = model_x([(calcite.q0 / 1.008, 4.0 * calcite.intensity)])
    _, (check,) = Verifier(PHASES, GRID).check(x, np.array([[0.02, 0.97, 0.02]]))
    fit = fitted_curve(check, ["calcite"], x[0], GRID)
    assert np.nanmax(fit) > 0.5 * x[0, 1].max()  # the lines at the refined cell carry the pattern
    sticks = refined_sticks(check.phases["calcite"], get_phase("calcite").reflections(None))
    assert np.allclose(np.sort(sticks.q), np.sort(calcite.q0 / 1.008), atol=0.004)
    fig = pattern_figure(
        (GRID.values, x[0, 0]),
        ["calcite"],
        {"calcite": sticks},
        background_removed=x[0, 1],
        fit=fit,
    )
    labels = {line.get_label() for ax in fig.axes for line in ax.get_lines()}
    assert {"fit at the refined cells", "residual"} <= labels


def test_a_frame_integrated_with_its_poni_holds_its_zero() -> None:
    """A 1D file's origin may be off (a zero shift the check fits); a frame integrated with its
    calibrated .poni (``meta["calibrated_geometry"]``) has none to speak of, so its zero is held
    near nothing."""
    calcite = get_phase("calcite").reflections(None, q_max=5.2)
    q = np.linspace(0.7, 5.2, 4000)
    shifted = calcite.q[:, None] / 1.004 + 0.003
    y = 500.0 + (
        4.0 * calcite.intensity[:, None] * np.exp(-0.5 * ((q - shifted) / 0.006) ** 2)
    ).sum(0)
    counts = np.random.default_rng(1).normal(y, np.sqrt(y))
    file = Pattern(q, counts, unit="q_A^-1", source="file")
    frame = Pattern(q, counts, unit="q_A^-1", source="frame", meta={"calibrated_geometry": True})
    predictor = Predictor(_Network([0.02, 0.97, 0.02]))
    from_file, from_frame = predictor.predict_patterns([file, frame])
    assert from_file.verification and from_frame.verification
    assert abs(from_file.verification.phases["calcite"].zero - 0.003) < 0.001
    assert abs(from_frame.verification.phases["calcite"].zero) < 0.001


def test_the_check_reads_the_pattern_beyond_the_networks_grid() -> None:
    """The network sees 0.8–5 Å⁻¹; the check reads on to 7 Å⁻¹ at the same step. A gasket whose few
    crystals light only its high-Q rings (two lines under 5 Å⁻¹, eight above) is evident there."""
    wide = check_grid(GRID)
    assert wide.q_min == GRID.q_min and wide.q_max == 7.0
    assert abs(wide.step - GRID.step) < 1e-3 * GRID.step
    rhenium = get_phase("rhenium").reflections(None, q_max=7.0)
    keep = (rhenium.q > 5.0) | (np.arange(rhenium.q.size) < 2)
    q = np.linspace(0.7, 7.2, 6000)
    y = 800.0 + (
        300.0 * np.exp(-0.5 * ((q[None] - rhenium.q[keep][:, None] / 0.995) / 0.005) ** 2)
    ).sum(0)
    pattern = Pattern(q, np.random.default_rng(2).normal(y, np.sqrt(y)), unit="q_A^-1", source="re")
    probs = np.array([[0.02, 0.02, 0.3]])
    verdicts = {}
    for grid in (GRID, wide):
        intensity, coverage = pattern.on_grid(grid)
        x = model_input(intensity[None], coverage[None], grid.step)
        final, (check,) = Verifier(PHASES, grid).check(x, probs)
        verdicts[grid.q_max] = (final[0, 2], check.phases["rhenium"].lines)
    assert verdicts[5.0][0] < 0.5 and verdicts[7.0][0] > 0.9, verdicts
    assert verdicts[7.0][1] > verdicts[5.0][1] + 3


def test_the_check_asks_one_calibration_flag_per_pattern() -> None:
    x = model_x([])
    with pytest.raises(ValueError, match="one flag per pattern"):
        Verifier(PHASES, GRID).check(x, np.array([[0.5, 0.5, 0.5]]), np.array([True, False]))


def test_the_verdicts_decide_any_probabilities_of_their_patterns() -> None:
    """The check's verdicts, computed once, decide the network's probabilities as the check does
    and an adapted model's later, for any subset of the patterns, in their order."""
    calcite = PhaseLines.build(get_phase("calcite"), GRID)
    bastnaesite = PhaseLines.build(get_phase("bastnaesite"), GRID)
    x = np.concatenate(
        [
            model_x([(calcite.q0, 5.0 * calcite.intensity)], seed=1),
            model_x([(bastnaesite.q0, 8.0 * bastnaesite.intensity)], seed=2),
        ]
    )
    probs = np.array([[0.3, 0.4, 0.6], [0.7, 0.2, 0.9]])
    verifier = Verifier(PHASES, GRID)
    final, checks = verifier.check(x, probs)
    verdicts = verifier.verdicts(x)
    np.testing.assert_allclose(verdicts.decide(probs), final, atol=1e-12)
    np.testing.assert_allclose(verdicts.take(np.array([1])).decide(probs[1:]), final[1:])
    assert final[0, 1] > 0.9 and final[1, 2] < 0.5  # calcite called; rhenium on one coincident line
    assert checks[1].phases["rhenium"].p_checked == pytest.approx(final[1, 2])
    with pytest.raises(ValueError, match="do not match"):
        verdicts.decide(probs[:1])


def test_an_adapter_that_follows_its_labels_keeps_its_call_and_notes_the_check() -> None:
    """An adapted model whose adaptation found the check at odds with the user's labels
    (``Adapter.check`` False): its own call stands, the check reports, with a physics note."""
    from types import SimpleNamespace

    from xrdmtl.inference.results import Flag

    calcite = get_phase("calcite").reflections(None, q_max=5.2)
    q = np.linspace(0.7, 5.2, 4000)
    y = 500.0 + (
        4.0 * calcite.intensity[:, None] * np.exp(-0.5 * ((q - calcite.q[:, None]) / 0.006) ** 2)
    ).sum(0)
    pattern = Pattern(q, np.random.default_rng(0).normal(y, np.sqrt(y)), unit="q_A^-1", source="c")
    model = _Network([0.02, 0.1, 0.02])  # the labels of this run say: no calcite at this stage
    (checked,) = Predictor(model).predict_patterns([pattern])
    assert checked.found == ["calcite"] and Flag.PHYSICS not in checked.flags
    model.adapter = SimpleNamespace(check=False)  # type: ignore[attr-defined]
    predictor = Predictor(model)
    (kept,) = predictor.predict_patterns([pattern])
    assert not predictor.check_decides and kept.found == []
    assert kept.probabilities["calcite"] == pytest.approx(0.1)
    assert kept.flagged(Flag.PHYSICS) == ["calcite"] and "reads calcite present" in kept.warning
    assert kept.verification is not None and kept.verification.phases["calcite"].p_checked > 0.9


def test_a_phase_none_of_whose_lines_lies_on_the_data_is_not_called() -> None:
    """A pattern that reaches only 1.0–2.1 Å⁻¹ holds none of rhenium's lines (its first, 100, lies
    at 2.6): whatever the network says, the check calls no rhenium — the pattern shows nothing of
    it — and reads its lines as unknown."""
    q = np.linspace(1.0, 2.1, 800)
    y = np.random.default_rng(3).normal(1000.0, np.sqrt(1000.0), q.size)
    pattern = Pattern(q, y, unit="q_A^-1", source="narrow")
    intensity, coverage = pattern.on_grid(GRID)
    x = model_input(intensity[None], coverage[None], GRID.step)
    final, (check,) = Verifier(PHASES, GRID).check(x, np.array([[0.02, 0.02, 0.9]]))
    assert np.isnan(check.phases["rhenium"].lines)
    assert final[0, 2] <= 0.05
