"""Grain spots kept by ``--mask auto`` (issue 29): frames ``--mask none`` vs the auto mask of before vs
the auto mask that spares the spots on an evident phase's lines.

Frames of the HOLDOUT family (``bench_verify.simulate``), read as predict reads them
(:func:`xrdmtl.io.read.read_path` with the predictor's :attr:`~xrdmtl.inference.predictor.Predictor.grain_lines`),
scored by ``bench_verify.score`` for the network alone and with the physics check: exact match,
few-crystal recall, false calls, on all frames and on those with strong anvil spots (a true spot
mask of at least ``STRONG_SPOT_PIXELS`` pixels: the top quarter of the development family); and the
spots spared per frame and the reading time per frame.

``python benchmarks/bench_grains.py --folder DIR --seed SEED --n N`` (``make bench``: 60 frames of the
verdict family)
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

from bench_verify import SEED, read_truth, score, simulate

STRONG_SPOT_PIXELS = 150
VIEWS = {  # (mask, keep_grains)
    "none": ("none", True),
    "auto_old": ("auto", False),
    "auto_grains": ("auto", True),
}


def run(folder: Path) -> dict[str, float]:
    """Each view of ``folder``'s frames read once, predicted by the network and the checked path."""
    from xrdmtl.inference.predictor import Predictor
    from xrdmtl.io.labels import read_labels
    from xrdmtl.io.read import ReadOptions, read_path

    truth = read_truth(folder)
    network, checked = Predictor(verify=False), Predictor(verify=True)
    files, marks = read_labels(folder / "labels.csv", network.phases)
    labels = {
        Path(f).stem: dict(zip(network.phases, row, strict=True))
        for f, row in zip(files, marks.tolist(), strict=True)
    }
    with open(folder / "truth.csv", newline="") as fh:
        strong = {
            Path(r["file"]).stem
            for r in csv.DictReader(fh)
            if int(r["spot_pixels"]) >= STRONG_SPOT_PIXELS
        }
    figures: dict[str, float] = {}
    for view, (mask, keep) in VIEWS.items():
        options = ReadOptions(poni=folder / "geometry.poni", mask=mask, keep_grains=keep)
        start = time.perf_counter()
        items = [it for f in files for it in read_path(f, options, network.grain_lines)]
        figures[f"grains_{view}_read_s_per_frame"] = (time.perf_counter() - start) / len(files)
        spared = [
            it.meta.get("spared_spots", 0) for _, it in items if not isinstance(it, Exception)
        ]
        figures[f"grains_{view}_spared_per_frame"] = sum(spared) / len(files)
        for name, predictor in (("network", network), ("checked", checked)):
            preds = predictor.predict_items(items, False)[0]
            subset = [p for p in preds if Path(p.file).stem in strong]
            for part, chosen in (("", preds), ("strong_anvil_", subset)):
                for key, value in score(chosen, labels, truth, network.phases).items():
                    if not key.startswith("cell") and key != "n":
                        figures[f"grains_{view}_{name}_{part}{key}"] = float(value)
    return figures


def bench() -> dict[str, float]:
    """``make bench``: 60 frames of the verdict family (``bench_verify.SEED``)."""
    with tempfile.TemporaryDirectory(prefix="xrdmtl-grains-") as tmp:
        return run(simulate(Path(tmp), 60, SEED))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=150)
    parser.add_argument("--seed", type=int, default=424242)
    parser.add_argument("--folder", default=None, help="keep (or reuse) the simulated frames here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xrdmtl-grains-") as tmp:
        folder = simulate(Path(args.folder or tmp), args.n, args.seed)
        print(json.dumps(run(folder), indent=1))


if __name__ == "__main__":
    main()
