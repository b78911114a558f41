"""Adaptation on independent draws: never worse than the network, and an estimate one can rely on.

Frames of the frame simulator's held-out preset (``HOLDOUT``) are independent draws, so their labels
do not follow their neighbours: the labels can only recalibrate the network, never vote. For each N,
``--draws`` random sets of N labeled patterns (the pyFAI 1D integrations, ``--view``) are adapted to
as ``xrdmtl finetune`` does (:func:`~xrdmtl.training.adapt.fit_adapter`) and scored on up to 400
other patterns of the family, next to the default model on the same patterns (both decided with
the physics check as ``predict`` decides them, the adapter choosing whether its check decides or
only reports). Printed per N: the
mean exact match of both, the worst draw's difference (adapted − default, never below 0 is the
aim), and the mean distance of the nested leave-one-out estimate from the outcome.

Session 11 chose its rule on seeds 2601 and 2602 and judged it on 2603 (docs/adapt.md).

``python benchmarks/bench_adapt.py [--folder DIR] [--n 500] [--seed 2603] [--labels 10,20,50,100]
[--draws 10] [--view unmasked]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

SEED = 2603
N_FRAMES = 250
LABELS = (20, 50)
DRAWS = 5

TARGETS: dict[str, float] = {f"adapt_n{n}_worst_gain": 0.0 for n in LABELS}


def _family(folder: Path, n: int, seed: int, view: str) -> tuple[Any, ...]:
    """Model input, labels, audit flags, the default model's probabilities and thresholds, and
    the check's verdicts of a family."""
    from xrdmtl.io.read import ReadOptions
    from xrdmtl.model.files import default_model_dir, load_model
    from xrdmtl.model.preprocess import model_input
    from xrdmtl.workflows.adapt import read_and_audit

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_verify import simulate

    simulate(folder, n, seed)
    base = load_model(default_model_dir(), device="cpu")
    labeled = read_and_audit(folder / view / "labels.csv", default_model_dir(), ReadOptions())
    x = model_input(labeled.data.intensity, labeled.data.coverage, base.grid.step)
    p = base.network_proba(x).astype(np.float64)
    return x, labeled.data.labels, labeled.contradicted, p, base.thresholds, labeled.verdicts


def _exact(p: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> float:
    from xrdmtl.model.metrics import exact_match

    return exact_match(labels.astype(bool), p > thresholds)


def score(
    folder: Path, n_frames: int, seed: int, counts: tuple[int, ...], draws: int, view: str
) -> dict[str, float]:
    """The figures of the module docstring, per N."""
    from xrdmtl.model.adapter import check_decides
    from xrdmtl.training.adapt import fit_adapter
    from xrdmtl.workflows.adapt import check_of

    x, labels, contradicted, p, thr, verdicts = _family(folder, n_frames, seed, view)
    out: dict[str, float] = {}
    for n in counts:
        rows = []
        for draw in range(draws):
            order = np.random.default_rng([draw, n]).permutation(len(labels))
            train, test = order[:n], order[n : n + 400]
            fit = fit_adapter(
                x[train], labels[train], p[train], thr, contradicted[train],
                check=check_of(verdicts.take(train)),
            )  # fmt: skip
            adapted = fit.adapter.combine(x[test], p[test].astype(np.float32))
            checked = verdicts.take(test)
            adapted = checked.decide(adapted) if check_decides(fit.adapter) else adapted
            default = checked.decide(p[test])
            a, d = _exact(adapted, labels[test], thr), _exact(default, labels[test], thr)
            assert fit.estimate is not None
            rows.append((d, a, fit.estimate.exact))
        r = np.array(rows)
        out[f"adapt_n{n}_default_exact"] = float(r[:, 0].mean())
        out[f"adapt_n{n}_adapted_exact"] = float(r[:, 1].mean())
        out[f"adapt_n{n}_worst_gain"] = float((r[:, 1] - r[:, 0]).min())
        out[f"adapt_n{n}_estimate_error"] = float(np.abs(r[:, 2] - r[:, 1]).mean())
    return out


def bench() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="xrdmtl-bench-adapt-") as tmp:
        return score(Path(tmp), N_FRAMES, SEED, LABELS, DRAWS, "unmasked")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, help="simulated family (made there if absent)")
    parser.add_argument("--n", type=int, default=500, help="frames in the family")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--labels", default="10,20,50,100", help="comma-separated N")
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--view", choices=("unmasked", "masked"), default="unmasked")
    args = parser.parse_args()
    counts = tuple(int(v) for v in args.labels.split(","))
    with tempfile.TemporaryDirectory(prefix="xrdmtl-bench-adapt-") as tmp:
        folder = args.folder or Path(tmp)
        figures = score(folder, args.n, args.seed, counts, args.draws, args.view)
    for name, value in figures.items():
        print(f"{name:32s} {value:8.3f}")


if __name__ == "__main__":
    main()
