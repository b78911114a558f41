"""A held-out family no model is tuned on, and the measured lab patterns that must stay right.

Frames of the frame simulator's ``HOLDOUT`` preset (λ = 0.62 Å; other widths, ±2 % lattices with
c/a changes, textures, water + Compton background, module gaps, anvil spots, a handful of crystallites
to fine powder, rings of random-cell phases in 15 %), written by ``simulate_frames`` and scored the way
a user would: ``xrdmtl evaluate`` on the pyFAI 1D integrations unmasked and with the true spot mask,
and on the EDF frames with ``--mask none`` and ``--mask auto``. Also the automatic mask on this
family's frames with few-crystal (spotty) sample rings: recall of anvil-spot intensity and the share
of ring intensity it removes. And every measured lab pattern of ``../shared/data/rruff`` and ``real``
against what it holds (calcite files: calcite only; every other file: no target), as the share of
the files that could be read.

Every exact match comes with its binomial standard error (``…_exact_se``): at 200 frames and ~84 %
it is 2.6 points, more than most changes between two models, so compare models on 1000 frames.
The default seed drew the development family: no model trains on it, but sessions chose among
their runs on it, so its figures may flatter. The verdict is a family drawn after the choices and
used for nothing else: ``--seed 271828 --n 1000`` (session 7) and ``--seed 161803 --n 1000``
(session 8). Two such draws differed by up to 3.3 points for one model, so judge on both together.

``python benchmarks/bench_holdout.py [--model DIR] [--n 200] [--seed 170017] [--folder DIR] [--json]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

SEED = 170017  # the development family: never trained on, but chosen on (see above)
N_FRAMES = 200
N_MASK = 40
SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"

TARGETS: dict[str, float] = {
    "holdout_unmasked_exact": 0.95,
    "holdout_masked_exact": 0.95,
    "holdout_frames_none_exact": 0.95,
    "holdout_frames_auto_exact": 0.95,
    "holdout_auto_minus_none": 0.0,
    "external_right_fraction": 1.0,
    "holdout_spotty_spot_recall": 0.9,
    "holdout_spotty_ring_kept": 0.99,
}


def external_truth(name: str, phases: list[str]) -> dict[str, int]:
    """What a measured lab file holds: its mineral is named first (``Calcite__…``)."""
    mineral = name.split("__")[0].lower()
    return {p: int(p == mineral) for p in phases}


def external_files(shared: Path = SHARED) -> list[Path]:
    files = sorted((shared / "rruff").glob("*.txt")) + sorted((shared / "real").glob("*"))
    return [f for f in files if f.is_file() and f.suffix.lower() != ".md"]


def score_external(predictor, shared: Path = SHARED) -> tuple[float, int, list[str]]:
    """Share of the readable measured files called right, the number not read, and the wrong ones."""
    files = external_files(shared)
    if not files:
        return float("nan"), 0, []
    preds = predictor.predict_files(
        [str(f) for f in files], workers=1, progress=False, expand=False
    )
    wrong, unread = [], 0
    for f, pred in zip(files, preds, strict=True):
        truth = external_truth(f.name, predictor.phases)
        if not pred.ok:
            unread += 1
            wrong.append(f"{f.name[:40]}: not read: {pred.error}")
        elif any(pred.calls[p] != v for p, v in truth.items()):
            probs = ", ".join(f"{p} {pred.probabilities[p]:.2f}" for p in predictor.phases)
            wrong.append(f"{f.name[:40]}: {probs}")
    read = len(files) - unread
    return (len(files) - len(wrong)) / read if read else float("nan"), unread, wrong


def mask_quality(n: int = N_MASK, seed: int = SEED + 1) -> dict[str, float]:
    """Auto mask on HOLDOUT frames whose sample rings are spotty (few crystallites)."""
    from xrdmtl.io.frames import Integrator
    from xrdmtl.synthesis.frames import (
        HOLDOUT,
        HOLDOUT_WAVELENGTH,
        SMOOTH_SPOTS,
        FrameSimulator,
        geometry_for,
    )

    sim = FrameSimulator(geometry=geometry_for(HOLDOUT_WAVELENGTH), config=HOLDOUT)
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        sim.ai.write(str(Path(tmp) / "g.poni"))
        integ = Integrator(Path(tmp) / "g.poni")
    recall, kept, lost_total, ring_total, frames = [], [], 0.0, 0.0, 0
    while frames < n:
        s = sim.sample(rng)
        spotty = any(
            isinstance(v, dict) and v.get("spots_per_ring", 1e9) < SMOOTH_SPOTS
            for v in s.info.values()
        )
        if not spotty:
            continue
        frames += 1
        m = integ.auto_mask(s.frame)
        if s.spot_counts.sum() > 0:
            recall.append(float((s.spot_counts * m).sum() / s.spot_counts.sum()))
        ring = s.ring_counts * ~s.spot_mask
        lost = float((ring * m).sum())
        lost_total += lost
        ring_total += float(ring.sum())
        if ring.sum() > 0:
            kept.append(1 - lost / float(ring.sum()))
    return {
        "holdout_spotty_spot_recall": float(np.mean(recall)) if recall else float("nan"),
        "holdout_spotty_ring_kept": 1 - lost_total / max(ring_total, 1e-9),
        "holdout_spotty_ring_kept_worst": float(np.min(kept)) if kept else float("nan"),
    }


def run(
    model: str | None = None,
    n: int = N_FRAMES,
    seed: int = SEED,
    n_mask: int = N_MASK,
    folder: str | None = None,
    verbose: bool = False,
) -> dict[str, float]:
    from xrdmtl.inference.predictor import Predictor
    from xrdmtl.io.read import ReadOptions
    from xrdmtl.synthesis.frames import (
        HOLDOUT,
        HOLDOUT_WAVELENGTH,
        FrameSimulator,
        geometry_for,
        simulate_frames,
    )
    from xrdmtl.workflows.evaluate import evaluate_labels

    predictor = Predictor(model)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(folder or tmp)
        if not (out / "labels.csv").is_file():
            sim = FrameSimulator(geometry=geometry_for(HOLDOUT_WAVELENGTH), config=HOLDOUT)
            simulate_frames(out, n, seed, simulator=sim)
        views = {
            "unmasked": (out / "unmasked" / "labels.csv", ReadOptions()),
            "masked": (out / "masked" / "labels.csv", ReadOptions()),
            "frames_none": (
                out / "labels.csv",
                ReadOptions(poni=out / "geometry.poni", mask="none"),
            ),
            "frames_auto": (
                out / "labels.csv",
                ReadOptions(poni=out / "geometry.poni", mask="auto"),
            ),
        }
        for view, (labels, opts) in views.items():
            rep = evaluate_labels(predictor, labels, opts, workers=1, progress=False)
            exact = float(rep["exact_match"])
            figures[f"holdout_{view}_exact"] = exact
            figures[f"holdout_{view}_exact_se"] = float(np.sqrt(exact * (1 - exact) / rep["n"]))
            for p, r in rep["phases"].items():
                figures[f"holdout_{view}_{p}_acc"] = float(r["accuracy"])
            if verbose:
                wrong = rep["misclassified"]
                print(
                    f"{view}: exact {rep['exact_match']:.4f}, {len(wrong)} wrong, e.g.",
                    [(w["file"], w["labels"], w["calls"]) for w in wrong[:4]],
                )
    figures["holdout_auto_minus_none"] = (
        figures["holdout_frames_auto_exact"] - figures["holdout_frames_none_exact"]
    )
    right, unread, wrong = score_external(predictor)
    figures["external_right_fraction"] = right
    figures["external_unread_files"] = float(unread)
    if verbose and wrong:
        print("external, wrong:", *wrong, sep="\n  ")
    if n_mask:
        figures.update(mask_quality(n_mask))
    return figures


def bench() -> dict[str, float]:
    return run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--n", type=int, default=N_FRAMES, help="frames of the held-out family")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--n-mask", type=int, default=N_MASK, help="spotty frames for the mask figures"
    )
    parser.add_argument("--folder", default=None, help="keep (or reuse) the simulated frames here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = run(args.model, args.n, args.seed, args.n_mask, args.folder, verbose=not args.json)
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        for name, value in figures.items():
            print(f"{name:36s} {value:10.4f}")


if __name__ == "__main__":
    main()
