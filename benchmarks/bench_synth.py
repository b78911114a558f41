"""1D synthesis speed: patterns per second on the default grid (2048 points), three targets plus the
library's distractors, every distortion on (target ≥ 20,000/s on 2 cores).

Besides wall-clock rates (1 and 2 worker threads) it reports patterns per CPU-second of one thread,
which stays meaningful when other jobs share the machine (the load average is printed with it).
"""

from __future__ import annotations

import os
import time

import numpy as np


def bench(n: int = 16384, repeats: int = 3) -> dict[str, float]:
    """Figures (higher is better): best wall-clock patterns/s with 2 and 1 worker threads, and
    patterns per CPU-second with 1 thread."""
    from xrdmtl.physics.phases import TARGETS, get_phase
    from xrdmtl.synthesis.patterns import Synthesizer

    targets = [get_phase(t) for t in TARGETS]
    out: dict[str, float] = {}
    for workers, key in ((2, "synth_patterns_per_s"), (1, "synth_patterns_per_s_1_thread")):
        syn = Synthesizer(targets, workers=workers)
        rng = np.random.default_rng(0)
        syn.sample(1024, rng)  # warm-up
        best, cpu = 0.0, 0.0
        for _ in range(repeats):
            wall, proc = time.perf_counter(), time.process_time()
            syn.sample(n, rng)
            best = max(best, n / (time.perf_counter() - wall))
            cpu = max(cpu, n / max(time.process_time() - proc, 1e-9))
        out[key] = best
        if workers == 1:
            out["synth_patterns_per_cpu_s"] = cpu
    return out


if __name__ == "__main__":
    for name, value in bench().items():
        print(f"{name:32s} {value:12,.0f}")
    print(f"{'load average (1 min)':32s} {os.getloadavg()[0]:12.2f}")
