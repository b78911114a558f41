"""``predict`` end to end: files/s of :meth:`xrdmtl.inference.predictor.Predictor.predict_files` on 1D files and
frames/s on 768×768 detector frames (read, integrate, predict).

Writes ``N_FILES`` small ``.npy`` patterns (2×2000, 2θ at 0.561 Å, random mixtures of the targets on a
sloped background with noise) and ``N_XY`` ``.xy`` text files to a temporary folder, then times
``predict_files(folder, ReadOptions(0.561))`` with all the cores this process may use (folder expansion,
worker start-up, reading, resampling, model input, forward pass, warnings: everything but loading
the model and starting the worker server, which a warm-up call does once per Python process). Uses the shipped default model, or a freshly initialised network of the same
architecture when none is shipped yet (same cost).

With the physics check (``predict``'s default): ``N_VERIFY`` of the ``.npy`` files; every other
figure is the network alone (``predict --no-verify``).

Frames: ``N_FRAMES`` EDF files of the frame simulator with its geometry, ``--mask none``.

Besides the wall-clock rates it reports the CPU time per file in one process on one thread, which
stays meaningful on a machine shared with other work, and the load average seen during the run.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

N_FILES = 4000
N_XY = 1000
N_POINTS = 2000
N_FRAMES = 200
N_VERIFY = 1000  # files timed with the physics check
N_CPU_SAMPLE = 500  # files timed in one process for the CPU cost
WAVELENGTH = 0.561
TARGETS = {"predict_1d_verify_files_per_s": 200.0}  # issue 29: with the check, on 2 cores


def write_patterns(folder: Path, n: int, suffix: str, seed: int = 0) -> None:
    """``n`` synthetic 1D patterns in 2θ as ``.npy`` (2×N) or ``.xy`` text."""
    from xrdmtl.physics.phases import TARGETS, get_phase
    from xrdmtl.physics.units import q_to_tth, tth_to_q

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
                y += (
                    inten[:, None]
                    * 4.0
                    * np.exp(-0.5 * ((tth[None, :] - pos[:, None]) / 0.04) ** 2)
                ).sum(0)
        y = rng.poisson(y).astype(float)
        if suffix == ".npy":
            np.save(folder / f"p{i:05d}.npy", np.stack([tth, y]))
        else:
            np.savetxt(
                folder / f"p{i:05d}.xy",
                np.column_stack([tth, y]),
                fmt="%.4f %.1f",
                header="2th_deg I",
            )


def make_predictor(verify: bool = False) -> Any:
    """Predictor with the shipped model, else an untrained network of the default architecture;
    ``verify``: with the physics check (``predict``'s default; the other figures: ``--no-verify``)."""
    from xrdmtl.inference.predictor import Predictor
    from xrdmtl.model.files import default_model_dir, save_model
    from xrdmtl.model.networks import MultiTaskCNN
    from xrdmtl.physics.phases import TARGETS

    if (default_model_dir() / "model.json").is_file():
        return Predictor(verify=verify)
    with tempfile.TemporaryDirectory(prefix="xrdmtl-bench-model-") as tmp:
        model = save_model(Path(tmp) / "model", MultiTaskCNN(list(TARGETS)))
        return Predictor(model, verify=verify)


def bench() -> dict[str, float]:
    """Files/s (wall clock, all cores) and CPU ms per file (one process, one thread) for .npy and
    .xy inputs and for detector frames."""
    from xrdmtl.io.read import ReadOptions

    predictor = make_predictor()
    figures = {}
    with tempfile.TemporaryDirectory(prefix="xrdmtl-bench-") as tmp:
        npy, xy = Path(tmp) / "npy", Path(tmp) / "xy"
        write_patterns(npy, N_FILES, ".npy")
        write_patterns(xy, N_XY, ".xy", seed=1)
        warm_up = sorted(npy.glob("*.npy"))[
            :64
        ]  # starts the worker server (once per Python process)
        predictor.predict_files(warm_up, ReadOptions(WAVELENGTH), progress=False)
        for key, folder, n in (("predict_1d", npy, N_FILES), ("predict_xy", xy, N_XY)):
            figures[f"{key}_files_per_s"] = n / timed(
                predictor, [folder], n, ReadOptions(WAVELENGTH)
            )
            subset = sorted(folder.iterdir())[:N_CPU_SAMPLE]
            figures[f"{key}_cpu_ms_per_file"] = cpu_per_item(
                predictor, subset, ReadOptions(WAVELENGTH)
            )
        figures.update(bench_verify(npy))
    figures.update(bench_frames(predictor))
    figures["load_average_1min"] = os.getloadavg()[0]
    return figures


def bench_verify(folder: Path, n: int = N_VERIFY) -> dict[str, float]:
    """Files/s (all cores) and CPU ms per file (one process) of ``predict_files`` with the physics
    check on the first ``n`` files of ``folder`` (.npy)."""
    from xrdmtl.io.read import ReadOptions

    predictor = make_predictor(verify=True)
    files = sorted(folder.glob("*.npy"))[:n]
    predictor.predict_files(files[:64], ReadOptions(WAVELENGTH), progress=False)  # warm-up
    rate = n / timed(predictor, files, n, ReadOptions(WAVELENGTH))
    cpu = cpu_per_item(predictor, files[:N_CPU_SAMPLE], ReadOptions(WAVELENGTH))
    return {"predict_1d_verify_files_per_s": rate, "predict_1d_verify_cpu_ms_per_file": cpu}


def timed(predictor: Any, paths: list[Path], n: int, options: Any) -> float:
    """Wall-clock seconds of ``predict_files`` on all cores; checks that all ``n`` results are fine."""
    start = time.perf_counter()
    preds = predictor.predict_files(paths, options, progress=False)
    elapsed = time.perf_counter() - start
    assert len(preds) == n and all(p.ok for p in preds), "benchmark inputs failed"
    return elapsed


def cpu_per_item(predictor: Any, paths: list[Path], options: Any) -> float:
    """CPU milliseconds per input of ``predict_files`` in this process on one thread: the cost that
    stays meaningful on a machine shared with other work (two idle cores do at most 2000 / it per s)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.process_time()
        preds = predictor.predict_files(paths, options, workers=1, progress=False)
        return (time.process_time() - start) / len(preds) * 1e3
    finally:
        torch.set_num_threads(threads)


def bench_frames(predictor: object) -> dict[str, float]:
    """Frames/s (all cores) and CPU ms per frame (one process) of ``predict_files`` on simulated
    768×768 EDF frames with their geometry, no mask."""
    import fabio

    from xrdmtl.io.read import ReadOptions
    from xrdmtl.synthesis.frames import FrameSimulator

    sim = FrameSimulator()
    rng = np.random.default_rng(7)
    frames = [sim.sample(rng).frame for _ in range(8)]
    with tempfile.TemporaryDirectory(prefix="xrdmtl-bench-frames-") as tmp:
        folder = Path(tmp)
        poni = folder / "geometry.poni"
        sim.ai.write(str(poni))
        for i in range(N_FRAMES):
            fabio.edfimage.EdfImage(data=frames[i % len(frames)]).write(
                str(folder / f"f{i:05d}.edf")
            )
        rate = N_FRAMES / timed(predictor, [folder], N_FRAMES, ReadOptions(poni=poni))
        cpu = cpu_per_item(predictor, sorted(folder.glob("*.edf"))[:40], ReadOptions(poni=poni))
    return {"frames_end_to_end_per_s": rate, "frames_end_to_end_cpu_ms_per_frame": cpu}


if __name__ == "__main__":
    for name, value in bench().items():
        print(f"{name}: {value:,.3g}")
    sys.exit(0)
