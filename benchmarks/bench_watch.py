"""``xrdmtl watch`` at the beamline's pace: simulated detector frames (EDF, with their geometry and the
automatic anvil-spot mask) written into the watched folder at 2 files/s while ``watch --serve`` runs
with the shipped model; the latency from each file landing (its writer closing it) to its row in the
CSV, and the watcher's CPU use once the run is idle.

Targets (2 cores): every row within 1 s of its file landing; idle CPU < 2 % of a core. The CPU
seconds per frame (all the watcher's threads) tell, whatever else the machine runs, whether the
watcher keeps up: under 0.5 s it does, on one core. The load average is printed beside: on a busy
machine the latency is the queue behind other work.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RATE = 2.0  # files/s
MAXIMA: dict[str, float] = {
    "watch_latency_max_s": 1.0,
    "watch_cpu_s_per_frame": 1.0 / RATE,  # more, and one core cannot keep up with the run
    "watch_idle_cpu_pct_of_core": 2.0,
}


def _rows(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, newline="") as fh:
        return max(0, sum(1 for _ in csv.reader(fh)) - 1)


def _watcher(folder: Path, poni: Path, out: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "xrdmtl", "watch", str(folder), "--poni", str(poni),
         "--mask", "auto", "--out", str(out), "--serve", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:  # ready once it says it is watching
        if line.startswith("watching"):
            return proc
    raise RuntimeError("xrdmtl watch did not start")


def _land(frames: list[bytes], folder: Path, out: Path) -> list[float]:
    """Write the frames at RATE; each file's latency from its close to its row in the CSV."""
    landed: list[float] = []
    seen: list[float] = []
    start = time.monotonic()
    while len(seen) < len(frames):
        now = time.monotonic()
        k = len(landed)
        if k < len(frames) and now >= start + k / RATE:
            with open(folder / f"frame_{k:05d}.edf", "wb") as fh:
                fh.write(frames[k])
            landed.append(time.monotonic())
        seen += [time.monotonic()] * (_rows(out) - len(seen))
        if now - start > len(frames) / RATE + 60:
            raise TimeoutError(f"{len(seen)} of {len(frames)} rows after {now - start:.0f} s")
        time.sleep(0.005)
    return [s - w for s, w in zip(seen, landed, strict=True)]


def _cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) the process has used."""
    import psutil  # type: ignore[import-untyped]

    return float(sum(psutil.Process(pid).cpu_times()[:2]))


def _idle_cpu(pid: int, seconds: float = 10.0) -> float:
    before = _cpu(pid)
    time.sleep(seconds)
    return 100.0 * (_cpu(pid) - before) / seconds


def bench(n: int = 24) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "xrdmtl", "simulate", "frames", "--n", str(n), "--out",
             str(root / "sim")],
            check=True, capture_output=True,
        )  # fmt: skip
        frames = [p.read_bytes() for p in sorted((root / "sim" / "frames").glob("*.edf"))]
        (root / "watched").mkdir()
        out = root / "run.csv"
        proc = _watcher(root / "watched", root / "sim" / "geometry.poni", out)
        try:
            cpu = _cpu(proc.pid)
            latency = np.array(_land(frames, root / "watched", out))
            cpu = (_cpu(proc.pid) - cpu) / len(frames)
            time.sleep(2.0)
            idle = _idle_cpu(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    load = os.getloadavg()[0]
    print(f"watch: {len(latency)} frames at {RATE:g}/s on {os.cpu_count()} cores (load average "
          f"{load:.1f}); latency (s) "
          + " ".join(f"{v:.2f}" for v in latency))  # fmt: skip
    return {
        "watch_latency_median_s": float(np.median(latency)),
        "watch_latency_p95_s": float(np.percentile(latency, 95)),
        "watch_latency_max_s": float(latency.max()),
        "watch_cpu_s_per_frame": cpu,
        "watch_idle_cpu_pct_of_core": idle,
    }
