"""The experiment report: every table cell comes from results.json; HTML is self-contained."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from helpers import check_tables

from experiments.experiment import Stat, verdict
from experiments.report import write_report

PHASES = ["bastnaesite", "calcite", "rhenium"]


# ------------------------------------------------------------------------------- checking helpers


# ----------------------------------------------------------------------------------- fake results


def _s(rng: np.random.Generator, lo: float = 0.5, hi: float = 1.0, n: int = 3) -> dict:
    return Stat.of(rng.uniform(lo, hi, n)).to_dict()


def fake_results(hdac: bool = True) -> dict:
    """A small results dictionary shaped like ``run_experiment``'s."""
    rng = np.random.default_rng(0)
    tests = ["sim_unmasked", "sim_masked", "rruff"] + (
        ["hdac_unmasked", "hdac_masked"] if hdac else []
    )
    kinds = {t: "simulated" if t.startswith("sim") else "measured" for t in tests}
    keys = ["mtl", "binary", "paper", "mtl_ce", "mtl_focal", "mtl_unmasked_only", "mtl_masked_only"]
    settings = {}
    for k in keys:
        settings[k] = {
            "label": f"setting {k}",
            "arch": k.split("_")[0],
            "loss": "ce",
            "train_view": "mixed",
            "params": int(rng.integers(1000, 100000)),
            "train_time_s": _s(rng, 1, 5),
            "history": [[[float(i), float(1 / (i + 1))] for i in range(5)] for _ in range(3)],
            "val_curve": [[[2 * i, float(i / 5)] for i in range(3)] for _ in range(3)],
            "metrics": {
                t: {"exact": _s(rng), "f1": _s(rng), "acc": {p: _s(rng) for p in PHASES}}
                for t in tests
            },
            "confusion": {
                t: {p: {"tp": 3, "fp": 1, "fn": 0, "tn": 5} for p in PHASES} for t in tests
            },
            "per_file": {
                t: [
                    {
                        "file": f"{t}_{i}.npy",
                        "labels": {p: i % 2 for p in PHASES},
                        "probs": {p: float(rng.uniform()) for p in PHASES},
                        "agree": bool(i % 2),
                    }
                    for i in range(3)
                ]
                for t in tests
                if kinds[t] == "measured"
            },
        }
    q = np.linspace(0.8, 5, 64)
    return {
        "schema": 1,
        "meta": {
            "command": "xrdmtl experiment --out x --toy",
            "preset": "toy",
            "config": {"steps": 7, "finetune_steps": 3, "seeds": 3},
            "versions": {"torch": "2.13.0+cpu", "numpy": "2.4.6"},
            "seeds": [0, 1, 2],
            "phases": PHASES,
            "started": "2026-01-01T00:00:00+00:00",
            "wall_time_s": 12.5,
            "stage_time_s": {"data": 1.5, "training": 8.25},
            "cpus": 2,
            "device": "cpu",
            "synth": {"p_present": 0.45, "p_unmasked": 0.5},
        },
        "paper": {"source": "Li et al.", "synthetic_only_exact": 0.70, "few_labeled_exact": 0.90},
        "test_sets": {
            t: {"kind": kinds[t], "n": 9, "description": f"set {t}", "wavelength": 0.5}
            for t in tests
        },
        "settings": settings,
        "comparisons": {
            "primary_test_set": "sim_unmasked",
            "base": "mtl",
            "architecture": ["mtl", "binary", "paper"],
            "loss": ["mtl", "mtl_ce", "mtl_focal"],
            "tailored_loss": "mtl",
            "plain_loss": "mtl_ce",
            "masking": {
                "train": {
                    "mixed": "mtl",
                    "unmasked": "mtl_unmasked_only",
                    "masked": "mtl_masked_only",
                },
                "test_sets": ["sim_unmasked", "sim_masked"],
            },
            "data_efficiency_view": "unmasked",
            "few_n": 20,
        },
        "data_efficiency": {
            t: [{"n": n, "exact": _s(rng), "f1": _s(rng)} for n in (0, 5, 20)]
            for t in ("sim_unmasked", "sim_masked")
        },
        "hdac": {
            "available": hdac,
            "n": 29,
            "splits": 2,
            "synthetic_only": {
                v: settings["mtl"]["metrics"][f"hdac_{v}"] for v in ("unmasked", "masked")
            }
            if hdac
            else {},
            "cv": {
                v: [{"n": n, "exact": _s(rng), "runs": 6} for n in (5, 10, 20)]
                for v in ("unmasked", "masked")
            }
            if hdac
            else {},
            **(
                {
                    "contradicted": {
                        "unmasked": ["xy_c_62.npy"],
                        "masked": ["xy_c_17.npy", "xy_c_62.npy"],
                    },
                    "synthetic_only_uncontradicted": {
                        v: {"exact": _s(rng), "n": 27} for v in ("unmasked", "masked")
                    },
                    **{
                        key: {
                            v: [{"n": n, "exact": _s(rng), "runs": 6} for n in (5, 10, 20)]
                            for v in ("unmasked", "masked")
                        }
                        for key in ("cv_uncontradicted", "cv_base", "cv_base_uncontradicted")
                    },
                }
                if hdac
                else {}
            ),
        },
        "examples": [
            {
                "test_set": "sim_unmasked",
                "file": "f.xy",
                "q": q.tolist(),
                "signal": np.abs(np.sin(7 * q)).tolist(),
                "probs": {p: 0.5 for p in PHASES},
                "labels": {p: 1 for p in PHASES},
                "saliency": {p: np.abs(np.cos(5 * q)).tolist() for p in PHASES},
                "sticks": {p: [[2.0, 100.0], [3.0, 40.0]] for p in PHASES},
            }
        ],
    }


# ------------------------------------------------------------------------------------------ tests


def test_verdict_needs_a_difference_larger_than_the_spread():
    a, b = Stat(0.9, 0.02, 3), Stat(0.8, 0.03, 3)
    assert verdict(a, b) == "better" and verdict(b, a) == "worse"
    assert verdict(Stat(0.82, 0.05, 3), b) == "tie"
    assert verdict(Stat(0.8, 0.0, 3), Stat(0.8, 0.0, 3)) == "tie"
    s = Stat.of([0.5, 0.7, 0.9])
    assert np.isclose(s.mean, 0.7) and np.isclose(s.sd, 0.2) and s.n == 3
    assert Stat.from_dict(s.to_dict()) == s


def test_report_tables_come_from_results(tmp_path: Path):
    res = fake_results()
    md_path = write_report(res, tmp_path)
    md = md_path.read_text()
    assert check_tables(md, res) > 50
    for section in (
        "Ours next to the paper",
        "Multi-task CNN",
        "Tailored loss",
        "Data efficiency",
        "Masked against unmasked",
        "Real patterns",
        "How this report was made",
    ):
        assert section in md
    assert res["meta"]["command"] in md
    assert "masked: xy_c_17.npy, xy_c_62.npy" in md and "before fine-tuning, same held-out" in md
    for fig in (
        "fig_learning_curves.png",
        "fig_data_efficiency.png",
        "fig_confusion.png",
        "fig_example_1.png",
    ):
        assert (tmp_path / fig).stat().st_size > 1000 and f"]({fig})" in md
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5
    assert not re.search(r'src="(?!data:)', html)
    assert not list(tmp_path.glob(".*tmp"))


def test_report_from_json_without_measured_patterns(tmp_path: Path):
    res = fake_results(hdac=False)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(res))
    md = write_report(path, tmp_path / "rep").read_text()
    check_tables(md, res)
    assert "were not found: skipped" in md


def test_report_from_results_without_the_label_audit(tmp_path: Path):
    """Results written before the experiment audited the measured labels still make a report."""
    res = fake_results()
    for key in (
        "contradicted",
        "synthetic_only_uncontradicted",
        "cv_uncontradicted",
        "cv_base",
        "cv_base_uncontradicted",
    ):
        del res["hdac"][key]
    md = write_report(res, tmp_path).read_text()
    check_tables(md, res)
    assert "Fine-tuning on measured patterns" in md and "before fine-tuning" not in md


def test_a_placeholder_or_foreign_number_is_caught():
    res = fake_results()
    for bad in ("| a | b |\n|---|---|\n| x | TBD |", "| a | b |\n|---|---|\n| x | 12345.6 |"):
        try:
            check_tables(bad, res)
        except AssertionError:
            continue
        raise AssertionError(f"not caught: {bad}")
