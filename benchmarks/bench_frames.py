"""Frames: simulator speed, read + integrate speed (mask none), auto-mask speed and quality.

Targets (768×768 frames, 2 cores): simulation ≥ 5 frames/s, reading + pyFAI integration ≥ 100
frames/s; auto mask: ≥ 95 % of the anvil-spot intensity masked, ≤ 1 % of ring pixels masked.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

TARGETS: dict[str, float] = {
    "frames_read_integrate_per_s": 100,
    "auto_mask_spot_recall": 0.95,
    "auto_mask_ring_kept": 0.99,
}


def bench(n_sim: int = 20, n_read: int = 200, n_mask: int = 50) -> dict[str, float]:
    """Figures (higher is better): frames/s of simulation, read + integrate and auto mask; auto mask
    recall of spot intensity (mean, worst frame) and fraction of ring pixels left unmasked (all
    frames pooled, worst frame)."""
    import fabio

    from xrdmtl.io.frames import Integrator, read_frames
    from xrdmtl.synthesis.frames import FrameSimulator

    sim = FrameSimulator()
    rng = np.random.default_rng(2024)
    sim.sample(rng)
    t = time.perf_counter()
    samples = [sim.sample(rng) for _ in range(n_sim)]
    sim_rate = n_sim / (time.perf_counter() - t)
    samples += [sim.sample(rng) for _ in range(max(0, n_mask - n_sim))]

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sim.ai.write(str(folder / "geometry.poni"))
        paths = []
        for i in range(n_read):
            path = folder / f"f{i:05d}.edf"
            fabio.edfimage.EdfImage(data=samples[i % len(samples)].frame).write(str(path))
            paths.append(path)
        t = time.perf_counter()
        integ = Integrator(folder / "geometry.poni")
        n = 0
        for path in paths:
            for label, frame in read_frames(path):
                integ.integrate(frame, source=label)
                n += 1
        read_rate = n / (time.perf_counter() - t)

    recall, kept, ring_total, ring_masked = [], [], 0, 0
    t = time.perf_counter()
    for s in samples[:n_mask]:
        m = integ.auto_mask(s.frame)
        if s.spot_counts.sum() > 0:  # a frame may draw no anvil spot: nothing to recall there
            recall.append(float((s.spot_counts * m).sum() / s.spot_counts.sum()))
        rings = s.ring_pixels & ~s.spot_mask
        ring_total += int(rings.sum())
        ring_masked += int((m & rings).sum())
        if rings.any():
            kept.append(1.0 - float((m & rings).sum() / rings.sum()))
    mask_rate = n_mask / (time.perf_counter() - t)
    return {
        "frames_sim_per_s": sim_rate,
        "frames_read_integrate_per_s": read_rate,
        "frames_auto_mask_per_s": mask_rate,
        "auto_mask_spot_recall": float(np.mean(recall)),
        "auto_mask_spot_recall_worst": float(np.min(recall)),
        "auto_mask_ring_kept": 1.0 - ring_masked / max(ring_total, 1),
        "auto_mask_ring_kept_worst": float(np.min(kept)),
    }


if __name__ == "__main__":
    for name, value in bench().items():
        print(f"{name:32s} {value:12.4f}")
