"""Figures: pattern with sticks and saliency, run timelines; written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xrdmtl.inference.parallel import write_timelines
from xrdmtl.inference.results import Prediction
from xrdmtl.io.plots import plot_pattern, plot_timeline
from xrdmtl.physics.miller import format_hkl
from xrdmtl.physics.pattern import Pattern
from xrdmtl.physics.phases import get_phase

PNG = b"\x89PNG"


def test_plot_pattern_with_sticks_and_saliency(tmp_path: Path) -> None:
    q = np.linspace(0.8, 5.0, 500)
    y = np.where(q > 1.0, 1.0 + np.exp(-0.5 * ((q - 2.07) / 0.01) ** 2), np.nan)
    refs = {
        n: get_phase(n).reflections(None, q_max=5.0) for n in ("bastnaesite", "calcite", "rhenium")
    }
    sal = {n: np.sin(q * i) for i, n in enumerate(refs)}
    out = plot_pattern(
        (q, y),
        ["calcite"],
        refs,
        saliency=sal,
        path=tmp_path / "a" / "p.png",
        probabilities={"bastnaesite": 0.1, "calcite": 0.9, "rhenium": 0.0},
    )
    assert out.read_bytes()[:4] == PNG
    pat = Pattern(
        np.linspace(10, 40, 300),
        np.random.default_rng(0).random(300),
        wavelength=0.561,
        source="x.xy",
    )
    assert plot_pattern(pat, [], refs, path=tmp_path / "b.png").read_bytes()[:4] == PNG
    assert not list(tmp_path.rglob(".*"))  # no temporary file left


def test_timelines(tmp_path: Path) -> None:
    probs = np.random.default_rng(0).random((30, 3))
    assert (
        plot_timeline(
            np.arange(30), probs, ["a", "b", "c"], tmp_path / "t.png", thresholds=[0.5] * 3
        ).read_bytes()[:4]
        == PNG
    )
    phases = ["a", "b"]

    def pred(label: str, p: float) -> Prediction:
        return Prediction(
            label, probabilities={"a": p, "b": 1 - p}, calls={"a": int(p > 0.5), "b": 0}
        )

    one_stack = [pred(f"run.h5::{i}", i / 5) for i in range(5)] + [pred("single.xy", 0.3)]
    written = write_timelines(one_stack, phases, [0.5, 0.5], tmp_path / "one")
    assert [p.name for p in written] == ["timeline.png"]
    two = (
        one_stack
        + [pred(f"other.h5::{i}", 0.5) for i in range(3)]
        + [Prediction("x.h5::0", error="bad")]
    )
    written = write_timelines(two, phases, [0.5, 0.5], tmp_path / "two")
    assert sorted(p.name for p in written) == ["timeline_other.png", "timeline_run.png"]


def test_pattern_figure_reads_like_a_diffraction_plot() -> None:
    """Q with 2θ (at the wavelength) and d axes; sticks of the called phases with matched reflections
    labelled hkl; unexplained peaks marked; calls and warnings in the title; legends off the data."""
    from xrdmtl.io.plots import pattern_figure

    q = np.linspace(0.8, 5.0, 2048)
    refs = {
        n: get_phase(n).reflections(None, q_max=5.0) for n in ("bastnaesite", "calcite", "rhenium")
    }
    calcite = refs["calcite"]
    strong = calcite.q[np.argsort(-calcite.intensity)[:3]]
    y = (
        1.0
        + sum(np.exp(-0.5 * ((q - c) / 0.01) ** 2) for c in [*strong, 3.61])
        + 0.02 * np.sin(40 * q)
    )
    fig = pattern_figure(
        (q, y),
        ["calcite"],
        refs,
        title="scan.xy",
        probabilities={"bastnaesite": 0.01, "calcite": 0.97, "rhenium": 0.02},
        background_removed=y - 1.0,
        wavelength=0.561,
        matched={"calcite": list(strong)},
        unexplained=[3.61],
        warning="unexplained peaks at Q=3.61 Å⁻¹",
    )
    title = fig.get_suptitle()
    assert (
        "scan.xy" in title and "calcite p=0.97" in title and "unexplained peaks at Q=3.61" in title
    )
    labels = {t.get_text() for ax in fig.axes for t in ax.texts}
    hkl = {format_hkl(calcite.hkl[i], "tex") for i in np.argsort(-calcite.intensity)[:3]}
    assert r"$2\bar{1}6$" in hkl  # a trigonal index with its overbar, never "2-16"
    assert hkl <= labels, (hkl, labels)  # the matched reflections are labelled with their hkl
    assert "?" in labels  # the unexplained peak is marked
    every = [
        *fig.axes,
        *(child for ax in fig.axes for child in ax.child_axes),
    ]  # secondary axes too
    axis_labels = {ax.get_xlabel() for ax in every} | {ax.get_ylabel() for ax in every}
    assert (
        "Q (Å⁻¹)" in axis_labels
        and "d (Å)" in axis_labels
        and "2θ (°) at λ = 0.561 Å" in axis_labels
    )
    assert (
        all(ax.get_legend() is None for ax in fig.axes) and fig.legends
    )  # the legend sits outside the data
    assert fig.get_figwidth() >= 10


def test_plot_pattern_without_saliency_or_calls(tmp_path: Path) -> None:
    q = np.linspace(0.8, 5.0, 300)
    y = 1 + np.random.default_rng(1).random(300)
    refs = {"calcite": get_phase("calcite").reflections(None, q_max=5.0)}
    out = plot_pattern(
        (q, y), [], refs, path=tmp_path / "p.png", probabilities={"calcite": 0.1}, warning="x" * 500
    )
    assert out.read_bytes()[:4] == PNG


def _two_phase_figure(background_removed: np.ndarray | None = None):
    from xrdmtl.io.plots import pattern_figure

    q = np.linspace(0.8, 5.0, 2048)
    refs = {n: get_phase(n).reflections(None, q_max=5.0) for n in ("bastnaesite", "calcite")}
    matched = {n: list(r.q[r.intensity >= 5]) for n, r in refs.items()}  # many, close together
    y = 1.0 + sum(np.exp(-0.5 * ((q - c) / 0.008) ** 2) for qs in matched.values() for c in qs)
    removed = y - 1.0 if background_removed is None else background_removed
    fig = pattern_figure(
        (q, y), list(refs), refs, background_removed=removed, matched=matched, unexplained=[]
    )
    return fig, fig.axes[1]


def test_hkl_labels_do_not_collide() -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig, ax = _two_phase_figure()
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    boxes = [t.get_window_extent(renderer) for t in ax.texts if t.get_text().startswith("$")]
    assert len(boxes) >= 6  # labels are kept where there is room
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert a.intersection(a, b) is None or a.intersection(a, b).width < 1, (a, b)


def test_matched_markers_never_sit_below_the_background() -> None:
    q = np.linspace(0.8, 5.0, 2048)
    dips = -0.5 * np.ones_like(q)  # a background-removed curve below the background everywhere
    _, ax = _two_phase_figure(background_removed=dips)
    marks = [ln for ln in ax.lines if ln.get_marker() == "o" and len(ln.get_ydata())]
    assert marks and all(np.min(ln.get_ydata()) >= 0.0 for ln in marks)
