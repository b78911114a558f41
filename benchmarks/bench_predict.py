"""``predict`` end to end on 1D files: files/s of :meth:`xrdmtl.predict.Predictor.predict_files`.

Writes ``N_FILES`` small ``.npy`` patterns (2×2000, 2θ at 0.561 Å, random mixtures of the targets on a
sloped background with noise) and ``N_XY`` ``.xy`` text files to a temporary folder, then times
``predict_files(folder, wavelength=0.561)`` with all the cores this process may use (folder expansion,
process pool start-up, reading, resampling, model input, forward pass, warnings: everything but
loading the model). Uses the shipped default model, or a freshly initialised network of the same
architecture when none is shipped yet (same cost).

Besides the wall-clock rates it reports the CPU time per file (this process and its workers), which
stays meaningful on a machine shared with other work, and the load average seen during the run.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_FILES = 4000
N_XY = 1000
N_POINTS = 2000
WAVELENGTH = 0.561


def write_patterns(folder: Path, n: int, suffix: str, seed: int = 0) -> None:
    """``n`` synthetic 1D patterns in 2θ as ``.npy`` (2×N) or ``.xy`` text."""
    from xrdmtl.phases import TARGETS, get_phase
    from xrdmtl.units import q_to_tth, tth_to_q

    rng = np.random.default_rng(seed)
    tth = np.linspace(4.0, 42.0, N_POINTS)
    q = tth_to_q(tth, WAVELENGTH)
    peaks = []
    for name in TARGETS:
        refl = get_phase(name).reflections(WAVELENGTH, q_max=float(q.max()))
        peaks.append((q_to_tth(refl.q, WAVELENGTH), refl.intensity))
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        y = 500.0 + 300.0 * np.exp(-(((tth - 15.0) / 8.0) ** 2))
        for pos, inten in peaks:
            if rng.random() < 0.5:
                y += (inten[:, None] * 4.0 * np.exp(-0.5 * ((tth[None, :] - pos[:, None]) / 0.04) ** 2)).sum(0)
        y = rng.poisson(y).astype(float)
        if suffix == ".npy":
            np.save(folder / f"p{i:05d}.npy", np.stack([tth, y]))
        else:
            np.savetxt(folder / f"p{i:05d}.xy", np.column_stack([tth, y]), fmt="%.4f %.1f",
                       header="2th_deg I")


def make_predictor() -> object:
    """Predictor with the shipped model, else an untrained network of the default architecture."""
    from xrdmtl.models import MultiTaskCNN, save_model
    from xrdmtl.phases import TARGETS
    from xrdmtl.predict import Predictor, default_model_dir

    if (default_model_dir() / "model.json").is_file():
        return Predictor()
    folder = Path(tempfile.mkdtemp(prefix="xrdmtl-bench-model-"))
    return Predictor(save_model(folder / "model", MultiTaskCNN(list(TARGETS))))


def bench() -> dict[str, float]:
    """Files/s for .npy and .xy inputs, and in-memory patterns/s of ``predict_patterns``."""
    from xrdmtl.readers import load_pattern

    predictor = make_predictor()
    with tempfile.TemporaryDirectory(prefix="xrdmtl-bench-") as tmp:
        npy, xy = Path(tmp) / "npy", Path(tmp) / "xy"
        write_patterns(npy, N_FILES, ".npy")
        write_patterns(xy, N_XY, ".xy", seed=1)
        predictor.predict_files([npy / "p00000.npy"], wavelength=WAVELENGTH, progress=False)  # warm-up
        figures = {}
        for key, folder, n in (("predict_1d", npy, N_FILES), ("predict_xy", xy, N_XY)):
            cpu0 = cpu_seconds()
            start = time.perf_counter()
            preds = predictor.predict_files([folder], wavelength=WAVELENGTH, progress=False)
            figures[f"{key}_files_per_s"] = n / (time.perf_counter() - start)
            figures[f"{key}_cpu_ms_per_file"] = (cpu_seconds() - cpu0) / n * 1e3
            assert len(preds) == n and all(p.ok for p in preds), "benchmark patterns failed"
        patterns = [load_pattern(p, wavelength=WAVELENGTH) for p in sorted(npy.glob("*.npy"))[:1000]]
        start = time.perf_counter()
        predictor.predict_patterns(patterns)
        figures["predict_patterns_in_memory_per_s"] = len(patterns) / (time.perf_counter() - start)
    figures["load_average_1min"] = os.getloadavg()[0]
    return figures


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished child processes."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    for name, value in bench().items():
        print(f"{name}: {value:,.1f}")
    sys.exit(0)
