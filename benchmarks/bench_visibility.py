"""The data's ceiling on held-out frames: clean reflections per present phase, and scores against labels
that count only the phases the frame lets anyone see (issue 29).

For each frame of the ``HOLDOUT`` family (drawn again from its seed with each phase's expected counts
kept, :mod:`xrdmtl.synthesis.visibility`) and each present target, the reflections at Poisson SNR ≥ 5
that carry at least twice every other phase's counts at their position, counted on the whole detector
(unmasked 1D) and without the true spot mask (masked 1D). Figures: how many present phases have 0,
1–2, 3–9, ≥ 10 clean reflections, and exact match of the shipped network alone and with ``--verify``
against the labels as drawn and against "present with ≥ k clean reflections" (k = 1, 3); and the
cells' ceiling: the mean chance, by the Cramér–Rao bound of each phase's clean reflections, that any
method places a and c within 0.2 % (drawn phases with ≥ 3 clean reflections, unmasked).

``python benchmarks/bench_visibility.py [--n 300] [--seed 271828] [--folder DIR] [--preset few]``
(``--folder``: an existing family of ``simulate_frames`` with that seed and preset, e.g.
``bench_verify.py``'s, else one is simulated there; ``--preset few``: the few-crystal family).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

SEED = 271828  # the verdict family (bench_holdout.py)
N_FRAMES = 300
KS = (1, 3)
BINS = ((0, 0), (1, 2), (3, 9), (10, 10**6))


def clean_per_frame(
    n: int, seed: int, preset: str = "holdout"
) -> tuple[dict[str, list[dict[str, int]]], list[dict[str, float]]]:
    """Per view (unmasked, masked): per frame, each drawn phase's clean reflections; and per frame
    each drawn phase's cell bound (:func:`~xrdmtl.synthesis.visibility.cell_bounds`, unmasked)."""
    from xrdmtl.synthesis.frames import (
        FEW_CRYSTAL,
        HOLDOUT,
        HOLDOUT_WAVELENGTH,
        FrameSimulator,
        geometry_for,
    )
    from xrdmtl.synthesis.visibility import cell_bounds, clean_reflections

    config = {"holdout": HOLDOUT, "few": FEW_CRYSTAL}[preset]
    sim = FrameSimulator(geometry=geometry_for(HOLDOUT_WAVELENGTH), config=config, keep_parts=True)
    rng = np.random.default_rng(seed)
    out: dict[str, list[dict[str, int]]] = {"unmasked": [], "masked": []}
    bounds: list[dict[str, float]] = []
    for _ in range(n):  # the same draws as simulate_frames(seed), frame by frame
        s = sim.sample(rng)
        out["unmasked"].append(clean_reflections(sim, s))
        out["masked"].append(clean_reflections(sim, s, s.spot_mask))
        bounds.append(cell_bounds(sim, s))
    return out, bounds


def cell_ceiling(
    labels: np.ndarray,
    phases: list[str],
    clean: list[dict[str, int]],
    bounds: list[dict[str, float]],
) -> dict[str, float]:
    """The mean chance that any method places a and c within 0.2 % (the Cramér–Rao bound), over the
    drawn phases with at least 3 clean reflections (those a method should call), and their number."""
    chances = [
        bounds[i].get(p, 0.0)
        for i in range(len(bounds))
        for j, p in enumerate(phases)
        if labels[i, j] and clean[i].get(p, 0) >= 3
    ]
    return {"cell_bound_within_0.2%": float(np.mean(chances)), "cell_bound_n": float(len(chances))}


def distribution(
    labels: np.ndarray, phases: list[str], clean: list[dict[str, int]]
) -> dict[str, float]:
    """Present phases by their clean reflections: 0, 1–2, 3–9, ≥ 10 (all, and per phase)."""
    out: dict[str, float] = {}
    for t, phase in enumerate(["all", *phases]):
        cols = range(len(phases)) if phase == "all" else [t - 1]
        counts = [
            clean[i].get(phases[j], 0) for i in range(len(clean)) for j in cols if labels[i, j]
        ]
        for lo, hi in BINS:
            out[f"{phase}_clean_{_bin_key(lo, hi)}"] = float(sum(lo <= c <= hi for c in counts))
    return out


def _bin_key(lo: int, hi: int) -> str:
    return f"{lo}" if lo == hi else f"{lo}-{hi}" if hi < 10**6 else f">={lo}"


def misses_by_clean(
    calls: np.ndarray, drawn: np.ndarray, phases: list[str], clean: list[dict[str, int]]
) -> dict[str, float]:
    """The drawn phases missed, by their clean reflections (0, 1–2, 3–9, ≥ 10)."""
    counts = np.array([[c.get(p, 0) for p in phases] for c in clean])
    missed = drawn & ~calls
    return {
        f"missed_clean_{_bin_key(lo, hi)}": float((missed & (counts >= lo) & (counts <= hi)).sum())
        for lo, hi in BINS
    }


def scores(calls: np.ndarray, labels: dict[str, np.ndarray]) -> dict[str, float]:
    """Exact match and phase errors (misses, false calls) of ``calls`` against each label set."""
    out: dict[str, float] = {}
    for name, lab in labels.items():
        out[f"exact_{name}"] = float((calls == lab).all(axis=1).mean())
        out[f"misses_{name}"] = float((lab & ~calls).sum())
        out[f"false_{name}"] = float((calls & ~lab).sum())
    return out


def run(folder: Path, n: int, seed: int, preset: str = "holdout") -> dict[str, float]:
    """The distribution and both predictors' scores on the 1D views of ``folder``."""
    from xrdmtl.inference.predictor import Predictor
    from xrdmtl.io.labels import read_labels
    from xrdmtl.synthesis.visibility import visible_labels

    clean, bounds = clean_per_frame(n, seed, preset)
    figures: dict[str, float] = {}
    for verify in (False, True):
        predictor = Predictor(verify=verify)
        phases = list(predictor.phases)
        for view, per_frame in clean.items():
            files, marks = read_labels(folder / view / "labels.csv", phases)
            if len(files) != n:
                raise SystemExit(f"{folder} holds {len(files)} frames, not --n {n}")
            drawn = np.asarray(marks) > 0
            if not verify:
                figures.update(
                    {f"{view}_{k}": v for k, v in distribution(drawn, phases, per_frame).items()}
                )
                if view == "unmasked":
                    figures.update(cell_ceiling(drawn, phases, per_frame, bounds))
            labels = {"drawn": drawn}
            labels.update({f"clean{k}": visible_labels(drawn, phases, per_frame, k) for k in KS})
            if not verify:  # frames a method that sees only clean reflections must get wrong
                figures.update(
                    {
                        f"{view}_frames_relabelled_{k}": float((lab != drawn).any(axis=1).sum())
                        for k, lab in labels.items()
                        if k != "drawn"
                    }
                )
            preds = predictor.predict_files(files, workers=1, progress=False)
            calls = np.array([[bool(p.calls.get(ph, 0)) for ph in phases] for p in preds])
            tag = "verified" if verify else "network"
            figures.update({f"{view}_{tag}_{k}": v for k, v in scores(calls, labels).items()})
            by_clean = misses_by_clean(calls, drawn, phases, per_frame)
            figures.update({f"{view}_{tag}_{k}": v for k, v in by_clean.items()})
    return {f"visibility_{k}": v for k, v in figures.items()}


def simulate(folder: Path, n: int, seed: int, preset: str = "holdout") -> Path:
    """The family's frames and 1D views in ``folder`` (kept if already there)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_verify import simulate as family

    return family(folder, n, seed, preset)


def bench() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="xrdmtl-visibility-") as tmp:
        return run(simulate(Path(tmp), 60, SEED), 60, SEED)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=N_FRAMES)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--folder", default=None, help="the family simulated with this seed")
    parser.add_argument(
        "--preset",
        choices=("holdout", "few"),
        default="holdout",
        help="few: the few-crystal family",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xrdmtl-visibility-") as tmp:
        folder = simulate(Path(args.folder or tmp), args.n, args.seed, args.preset)
        print(json.dumps(run(folder, args.n, args.seed, args.preset), indent=1))


if __name__ == "__main__":
    main()
