"""The "Q scaled by k" warning (a wrong wavelength or distance): how often it fires when it should
and when it should not.

- ``wavelength_hdac_flagged_{0.54,0.58,0.60}``: share of the measured HDAC patterns
  (:func:`experiments.experiment.hdac_dir`, λ = 0.561 Å, 36 of 58 with a target) read at a wrong wavelength that
  get the warning with k within 0.005 of λ used / λ true (skipped when the data is absent);
- ``wavelength_hdac_quiet``: share read at the right wavelength without it;
- ``wavelength_minerals_quiet`` / ``wavelength_synthetic_quiet``: share of synthetic lab patterns of
  non-target minerals (bench_minerals' four sets) and of the default synthesis without it.

Issue 27 (shipped model, --n 200): flagged 0.207 / 0.207 / 0.241 (at 0.54 / 0.58 / 0.60 Å), quiet
1.000, minerals 0.989 (9 of 800), synthetic 0.970 (6 of 200).
``python benchmarks/bench_wavelength.py [--n 200]``
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

N = 200
WAVELENGTH = 0.561
WRONG = (0.54, 0.58, 0.60)


def _flagged(predictor: Any, patterns: Sequence[Any]) -> list[float | None]:
    return [
        p.explanation.q_scale if p.explanation else None
        for p in predictor.predict_patterns(patterns)
    ]


def bench(n: int = N, model: str | None = None) -> dict[str, float]:
    from xrdmtl.inference.predictor import Predictor
    from xrdmtl.io.read import ReadOptions, read_files
    from xrdmtl.physics.phases import load_phase

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the research harness
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_minerals import SETS, synthetic_patterns

    from experiments.experiment import hdac_dir

    predictor = Predictor(model)
    out: dict[str, float] = {}
    hdac = hdac_dir()
    files = sorted(str(p) for p in hdac.glob("*/*.npy")) if hdac else []
    for lam in (WAVELENGTH, *WRONG) if files else ():
        ks = _flagged(predictor, read_files(files, ReadOptions(lam)))
        if lam == WAVELENGTH:
            out["wavelength_hdac_quiet"] = float(np.mean([k is None for k in ks]))
        else:
            right = [k is not None and abs(k - lam / WAVELENGTH) < 0.005 for k in ks]
            out[f"wavelength_hdac_flagged_{lam:g}"] = float(np.mean(right))
    minerals = []
    for i, names in enumerate(SETS.values()):
        phases = [load_phase(m) for m in names]
        minerals += _flagged(predictor, synthetic_patterns(predictor, n, 5 + i, phases))
    out["wavelength_minerals_quiet"] = float(np.mean([k is None for k in minerals]))
    synthetic = _flagged(predictor, synthetic_patterns(predictor, n, 6, None))
    out["wavelength_synthetic_quiet"] = float(np.mean([k is None for k in synthetic]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=N, help="synthetic patterns per set")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    args = parser.parse_args()
    for name, value in bench(args.n, args.model).items():
        print(f"{name}: {value:.3f}")


if __name__ == "__main__":
    main()
