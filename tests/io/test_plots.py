"""Figures: pattern with sticks and saliency, run timelines; written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xrdmtl.inference.parallel import write_timelines
from xrdmtl.inference.predictor import Prediction
from xrdmtl.io.plots import plot_pattern, plot_timeline
from xrdmtl.physics.pattern import Pattern
from xrdmtl.physics.phases import get_phase

PNG = b"\x89PNG"


def test_plot_pattern_with_sticks_and_saliency(tmp_path: Path) -> None:
    q = np.linspace(0.8, 5.0, 500)
    y = np.where(q > 1.0, 1.0 + np.exp(-0.5 * ((q - 2.07) / 0.01) ** 2), np.nan)
    refs = {n: get_phase(n).reflections(None, q_max=5.0) for n in ("bastnaesite", "calcite", "rhenium")}
    sal = {n: np.sin(q * i) for i, n in enumerate(refs)}
    out = plot_pattern((q, y), ["calcite"], refs, saliency=sal, path=tmp_path / "a" / "p.png",
                       probabilities={"bastnaesite": 0.1, "calcite": 0.9, "rhenium": 0.0})
    assert out.read_bytes()[:4] == PNG
    pat = Pattern(np.linspace(10, 40, 300), np.random.default_rng(0).random(300), wavelength=0.561, source="x.xy")
    assert plot_pattern(pat, [], refs, path=tmp_path / "b.png").read_bytes()[:4] == PNG
    assert not list(tmp_path.rglob(".*"))  # no temporary file left


def test_timelines(tmp_path: Path) -> None:
    probs = np.random.default_rng(0).random((30, 3))
    assert plot_timeline(np.arange(30), probs, ["a", "b", "c"], tmp_path / "t.png",
                         thresholds=[0.5] * 3).read_bytes()[:4] == PNG
    phases = ["a", "b"]

    def pred(label: str, p: float) -> Prediction:
        return Prediction(label, probabilities={"a": p, "b": 1 - p}, calls={"a": int(p > 0.5), "b": 0})

    one_stack = [pred(f"run.h5::{i}", i / 5) for i in range(5)] + [pred("single.xy", 0.3)]
    written = write_timelines(one_stack, phases, [0.5, 0.5], tmp_path / "one")
    assert [p.name for p in written] == ["timeline.png"]
    two = one_stack + [pred(f"other.h5::{i}", 0.5) for i in range(3)] + [Prediction("x.h5::0", error="bad")]
    written = write_timelines(two, phases, [0.5, 0.5], tmp_path / "two")
    assert sorted(p.name for p in written) == ["timeline_other.png", "timeline_run.png"]
