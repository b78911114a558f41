"""Propose and verify on held-out frames: the network alone vs with the physics check, and the refined cells.

Frames of the frame simulator's ``HOLDOUT`` preset (see ``bench_holdout.py``), scored on the pyFAI 1D
integrations unmasked and with the true spot mask (and, with ``--frames``, on the EDF frames with
``--mask none`` and ``--mask auto``): exact match without and with verification, recall on the
few-crystal subset (a present phase whose rings hold fewer than ``SMOOTH_SPOTS`` crystallite spots),
false calls, and the refined cells: the share of correctly called phases whose a and c both lie within
0.2 % of the drawn cell (``truth.csv``: lattice scale s and c-vs-a strain e, a = a₀ s / (1 + e/3),
c = c₀ s / (1 − 2e/3)).

``--fit`` instead fits the combination weights of :mod:`xrdmtl.inference.verify` (logistic regression
of each label on the network's logit and the two verdicts) on the given family, both 1D views pooled,
and prints them. They were fitted on the development family (seed 170017, 240 frames) and are judged
on the verdict family (seed 271828), which nothing was chosen on.

``--preset few`` draws the few-crystal family instead (``FEW_CRYSTAL``: every phase from a handful
of grains, each spot at its reflection's exact 2θ with a line's width); ``--hdac`` scores the measured
hdac patterns of ``../shared`` against their labels as they stand and against the labels the audit
does not contradict.

``--bound`` also reports, per view, two ceilings averaged over the same correctly called phases
whose cells are scored: the cells' Cramér–Rao bound (``synthesis.visibility.cell_bounds``,
unmasked; a local bound, which knows which peaks are the phase's), and their identifiability by
position (``synthesis.visibility.cell_identifiable`` on the view as the check reads it, at the
reach of :data:`REACHES` that favours it most): the share whose true cell explains more of the
pattern's peaks than any cell of the phase's range beyond 0.2 % does (ties half).

``python benchmarks/bench_verify.py [--n 300] [--seed 271828] [--folder DIR] [--frames] [--fit]
[--preset holdout|few] [--model DIR] [--hdac] [--bound]``
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

SEED = 271828  # the verdict family (bench_holdout.py): never used to choose anything here
DEV_SEED = 170017  # the development family: the combination weights were fitted on it
N_FRAMES = 300
REACHES = (0.002, 0.004, 0.006)  # Å⁻¹: how far from a line a peak may lie (identifiability)


def simulate(folder: Path, n: int, seed: int, preset: str = "holdout") -> Path:
    """A held-out family's frames (``preset``: ``holdout``, or ``few`` for the few-crystal
    family), 1D views and truth in ``folder`` (kept if already there)."""
    from xrdmtl.synthesis.frames import (
        FEW_CRYSTAL,
        HOLDOUT,
        HOLDOUT_WAVELENGTH,
        FrameSimulator,
        geometry_for,
        simulate_frames,
    )

    if not (folder / "truth.csv").is_file():
        config = {"holdout": HOLDOUT, "few": FEW_CRYSTAL}[preset]
        sim = FrameSimulator(geometry=geometry_for(HOLDOUT_WAVELENGTH), config=config)
        simulate_frames(folder, n, seed, simulator=sim)
    return folder


def read_truth(folder: Path) -> dict[str, dict[str, dict[str, float]]]:
    """Per frame name: per phase drawn, its lattice scale, c-vs-a strain and spots per ring."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    with open(folder / "truth.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            name = Path(row["file"]).stem
            per: dict[str, dict[str, float]] = {}
            for key, col in (("s", "lattice_scales"), ("e", "aniso"), ("spots", "spots_per_ring")):
                for item in row[col].split():
                    phase, value = item.split("=")
                    per.setdefault(phase, {})[key] = float(value)
            out[name] = per
    return out


def true_cell(phase: str, drawn: dict[str, float]) -> tuple[float, float]:
    from xrdmtl.physics.phases import get_phase

    cell = get_phase(phase).cell
    s, e = drawn["s"], drawn["e"]
    return cell[0] * s / (1 + e / 3), cell[2] * s / (1 - 2 * e / 3)


def score(
    preds: list,
    labels: dict[str, dict[str, int]],
    truth: dict,
    phases: list[str],
    ceilings: dict[str, dict[str, dict[str, float]]] | None = None,
) -> dict:
    """Exact match, few-crystal recall, false calls and refined-cell accuracy of ``preds``; with
    ``ceilings`` (per figure name, per frame name, per phase: a cell ceiling), also each ceiling
    averaged over the same correctly called phases whose cells are scored."""
    from xrdmtl.synthesis.frames import SMOOTH_SPOTS
    from xrdmtl.synthesis.visibility import CELL_TOLERANCE

    exact, few_hit, few_n, false, cells_ok, cells_n = 0, 0, 0, 0, 0, 0
    ceiling_sums = dict.fromkeys(ceilings or {}, 0.0)
    for pred in preds:
        name = Path(pred.file.split("::")[0]).stem
        lab = labels[name]
        exact += all(pred.calls.get(p, 0) == lab[p] for p in phases)
        for p in phases:
            called = pred.calls.get(p, 0)
            false += called and not lab[p]
            drawn = truth[name].get(p)
            if lab[p] and drawn and drawn["spots"] < SMOOTH_SPOTS:
                few_n += 1
                few_hit += called
            if lab[p] and called and pred.verification and p in pred.verification.phases:
                check = pred.verification.phases[p]
                a, c = true_cell(p, drawn or {"s": 1.0, "e": 0.0})
                cells_n += 1
                cells_ok += (
                    abs(check.a / a - 1) < CELL_TOLERANCE and abs(check.c / c - 1) < CELL_TOLERANCE
                )
                for key in ceiling_sums:
                    ceiling_sums[key] += (ceilings or {})[key].get(name, {}).get(p, 0.0)
    n = len(preds)
    figures = {
        "exact": exact / n,
        "few_crystal_recall": few_hit / max(few_n, 1),
        "few_crystal_n": few_n,
        "false_calls": false,
        "cell_within_0.2%": cells_ok / max(cells_n, 1),
        "cells_n": cells_n,
        "n": n,
    }
    figures.update({key: total / max(cells_n, 1) for key, total in ceiling_sums.items()})
    return figures


def views(folder: Path, frames: bool) -> dict[str, tuple[Path, Any]]:
    """Each view of ``folder``: its labels file and the read options (a ReadOptions)."""
    from xrdmtl.io.read import ReadOptions

    out: dict[str, tuple[Path, Any]] = {
        "unmasked": (folder / "unmasked" / "labels.csv", ReadOptions()),
        "masked": (folder / "masked" / "labels.csv", ReadOptions()),
    }
    if frames:
        for mask in ("none", "auto"):
            out[f"frames_{mask}"] = (
                folder / "labels.csv",
                ReadOptions(poni=folder / "geometry.poni", mask=mask),
            )
    return out


def run(
    folder: Path,
    frames: bool = False,
    model: str | None = None,
    bounds: dict[str, dict[str, float]] | None = None,
) -> dict[str, float]:
    """Both predictors on each view of ``folder``; with ``bounds`` (per frame name, each drawn
    phase's cell bound), the checked views also report the cell ceilings (:func:`score`)."""
    from xrdmtl.inference.predictor import Predictor
    from xrdmtl.io.labels import read_labels

    truth = read_truth(folder)
    figures: dict[str, float] = {}
    for verify in (False, True):
        predictor = Predictor(model, verify=verify)
        for view, (labels_csv, options) in views(folder, frames).items():
            files, marks = read_labels(labels_csv, predictor.phases)
            labels = {
                Path(f).stem: dict(zip(predictor.phases, row, strict=True))
                for f, row in zip(files, marks.tolist(), strict=True)
            }
            preds = predictor.predict_files(files, options, workers=1, progress=False)
            ceilings = None
            if bounds is not None and verify:
                ceilings = {"cell_bound_over_scored": bounds}
                ceilings.update(identifiable_cells(predictor, files, options, truth))
            tag = f"verify_{view}_{'checked' if verify else 'network'}"
            result = score(preds, labels, truth, predictor.phases, ceilings)
            reached = [v for k, v in result.items() if k.startswith("cell_identifiable_reach")]
            if reached:
                result["cell_identifiable_over_scored"] = max(reached)
            figures.update({f"{tag}_{key}": float(value) for key, value in result.items()})
    return figures


def identifiable_cells(
    predictor: Any, files: list[str], options: Any, truth: dict
) -> dict[str, dict[str, dict[str, float]]]:
    """Per reach of :data:`REACHES` (figure ``cell_identifiable_reach_<reach>``), per frame name,
    per drawn phase the check knows: whether the view, as the check reads it (its finer filter),
    places the phase's true cell by position (``synthesis.visibility.cell_identifiable``)."""
    from xrdmtl.inference.verify import RESIDUAL_CHANNEL
    from xrdmtl.io.read import read_files
    from xrdmtl.model.preprocess import COVERAGE_CHANNEL
    from xrdmtl.physics.refine import POSITION_WIDTH, significance
    from xrdmtl.synthesis.visibility import cell_identifiable

    check = predictor.verifier
    x, _ = check.inputs(read_files(files, options))
    covered = x[:, COVERAGE_CHANNEL] > 0.5
    z = significance(x[:, RESIDUAL_CHANNEL], covered, check.grid)[:, POSITION_WIDTH]
    names = [Path(f.split("::")[0]).stem for f in files]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for reach in REACHES:
        per: dict[str, dict[str, float]] = {n: {} for n in names}
        for phase, lines in check.lines.items():
            rows = [i for i, n in enumerate(names) if phase in truth[n]]
            if not rows:
                continue
            cells = np.array([true_cell(phase, truth[names[i]][phase]) for i in rows])
            scales = cells / np.array([lines.a0, lines.c0])
            found = cell_identifiable(z[rows], check.grid, lines, scales[:, 0], scales[:, 1], reach)
            for i, value in zip(rows, found, strict=True):
                per[names[i]][phase] = float(value)
        out[f"cell_identifiable_reach_{reach}"] = per
    return out


def hdac(model: str | None = None, shared: Path | None = None) -> dict[str, float]:
    """Exact match of both predictors on the measured hdac patterns of ``../shared``, against the
    labels as they stand and against the labels the audit (network alone) does not contradict: a
    pattern counts as right when every label of it that stands is matched."""
    from xrdmtl.inference.predictor import Predictor
    from xrdmtl.io.labels import read_labels
    from xrdmtl.io.read import ReadOptions
    from xrdmtl.workflows.audit import audit_labels

    root = shared or Path(__file__).resolve().parents[2] / "shared" / "data" / "hdac"
    options = ReadOptions(wavelength=0.561)
    figures: dict[str, float] = {}
    for view in ("unmasked", "masked"):
        labels_csv = root / f"labels_{view}.csv"
        network = Predictor(model, verify=False)  # the audit weighs the network alone
        table = audit_labels(labels_csv, network, options)
        contradicted = {(Path(r.file).name, r.phase) for r in table.flagged}
        figures[f"hdac_{view}_contradicted_labels"] = float(len(contradicted))
        for verify in (False, True):
            predictor = Predictor(model, verify=verify)
            files, marks = read_labels(labels_csv, predictor.phases)
            preds = predictor.predict_files(files, options, workers=1, progress=False)
            raw = standing = 0
            for f, row, pred in zip(files, marks.tolist(), preds, strict=True):
                hits = [
                    pred.calls.get(p, 0) == v for p, v in zip(predictor.phases, row, strict=True)
                ]
                raw += all(hits)
                standing += all(
                    h
                    for p, h in zip(predictor.phases, hits, strict=True)
                    if (Path(f).name, p) not in contradicted
                )
            key = f"hdac_{view}_{'checked' if verify else 'network'}"
            figures[f"{key}_exact"] = raw / len(files)
            figures[f"{key}_exact_standing_labels"] = standing / len(files)
    return figures


def fit(folders: list[Path]) -> dict[str, list[float]]:
    """Combination weights per phase (and pooled, ``generic``) by logistic regression on the 1D
    views of ``folders`` (families of :func:`simulate`), pooled."""
    from xrdmtl.inference.predictor import Predictor
    from xrdmtl.inference.verify import LINES_CLIP, POWDER_CLIP, _logit
    from xrdmtl.io.labels import read_labels
    from xrdmtl.io.read import ReadOptions, read_files
    from xrdmtl.model.preprocess import model_input

    predictor = Predictor(verify=True)
    assert predictor.verifier is not None
    rows: dict[str, list[np.ndarray]] = {p: [] for p in predictor.phases}
    ys: dict[str, list[np.ndarray]] = {p: [] for p in predictor.phases}
    for folder, view in ((f, v) for f in folders for v in ("unmasked", "masked")):
        files, marks = read_labels(folder / view / "labels.csv", predictor.phases)
        patterns = read_files(files, ReadOptions())
        grids = [p.on_grid(predictor.grid) for p in patterns]  # type: ignore[union-attr]
        x = model_input(
            np.stack([g[0] for g in grids]), np.stack([g[1] for g in grids]), predictor.grid.step
        )
        probs = np.asarray(predictor.model.predict_proba(x), dtype=float)
        refined = predictor.verifier.refine(*predictor.verifier.inputs(patterns))  # type: ignore[arg-type]
        for t, phase in enumerate(predictor.phases):
            r = refined[phase]
            rows[phase].append(
                np.stack(
                    [
                        _logit(probs[:, t]),
                        np.clip(np.nan_to_num(r.evidence), *LINES_CLIP),
                        np.clip(np.nan_to_num(r.powder), *POWDER_CLIP),
                        np.ones(len(probs)),
                    ],
                    axis=1,
                )
            )
            ys[phase].append(marks[:, t].astype(float))
    out = {p: _logistic(np.concatenate(rows[p]), np.concatenate(ys[p])) for p in predictor.phases}
    out["generic"] = _logistic(
        np.concatenate([np.concatenate(rows[p]) for p in predictor.phases]),
        np.concatenate([np.concatenate(ys[p]) for p in predictor.phases]),
    )
    return {k: [round(float(v), 2) for v in w] for k, w in out.items()}


def _logistic(x: np.ndarray, y: np.ndarray, l2: float = 0.01) -> np.ndarray:
    """Weights of a ridge-regularised logistic regression (Newton's method)."""
    w = np.zeros(x.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-x @ w))
        hess = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(x.shape[1])
        w -= np.linalg.solve(hess, x.T @ (p - y) + l2 * w)
    return w


def bench() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="xrdmtl-verify-") as tmp:
        return run(simulate(Path(tmp), 100, SEED))


def cell_bounds(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Each frame's drawn phases' cell bounds (``bench_visibility.clean_per_frame``, unmasked),
    by frame name, for the family of ``args``' seed and preset."""
    from bench_visibility import clean_per_frame

    _, bounds = clean_per_frame(args.n, args.seed, args.preset)
    return {f"frame_{i:05d}": b for i, b in enumerate(bounds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=N_FRAMES)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--folder", default=None, help="keep (or reuse) the simulated frames here")
    parser.add_argument("--frames", action="store_true", help="also the EDF frames, mask none/auto")
    parser.add_argument("--fit", action="store_true", help="fit the combination weights instead")
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        help="with --fit: another family folder (already simulated) to pool",
    )
    parser.add_argument("--preset", choices=("holdout", "few"), default="holdout")
    parser.add_argument(
        "--bound",
        action="store_true",
        help="also the cells' Cramér–Rao bound (draws the frames again) and their identifiability "
        "by position, over the phases scored",
    )
    parser.add_argument("--model", default=None, help="a model folder (default: the shipped one)")
    parser.add_argument(
        "--hdac", action="store_true", help="score the measured hdac patterns of ../shared instead"
    )
    args = parser.parse_args()
    if args.hdac:
        print(json.dumps(hdac(args.model), indent=1))
        return
    with tempfile.TemporaryDirectory(prefix="xrdmtl-verify-") as tmp:
        folder = simulate(Path(args.folder or tmp), args.n, args.seed, args.preset)
        result = (
            fit([folder, *map(Path, args.also)])
            if args.fit
            else run(folder, args.frames, args.model, cell_bounds(args) if args.bound else None)
        )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
