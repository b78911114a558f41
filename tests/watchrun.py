"""Helpers of the ``xrdmtl watch`` command tests: 1D pattern files and the command in a subprocess."""

from __future__ import annotations

import csv
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from helpers import synthetic

import xrdmtl

READING = ["--wavelength", "0.561", "--x-unit", "2th_deg"]


def pattern_bytes(seed: int) -> bytes:
    """A synthetic 1D pattern (2θ at 0.561 Å) as .xy text."""
    p = synthetic({"calcite": 1.0} if seed % 2 else {"rhenium": 1.0}, seed=seed)
    return "".join(f"{x:.4f} {y:.3f}\n" for x, y in zip(p.x, p.y, strict=True)).encode()


def land(path: Path, data: bytes) -> float:
    """Write ``path`` as a detector's writer does (a hidden temporary file renamed into place);
    the time it landed."""
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return time.monotonic()


def csv_rows(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.reader(fh))[1:]


def wait_rows(path: Path, n: int, timeout: float = 60.0) -> list[list[str]]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rows = csv_rows(path)
        if len(rows) >= n:
            return rows
        time.sleep(0.05)
    raise TimeoutError(f"{path}: {len(csv_rows(path))} rows after {timeout} s, expected {n}")


class WatchProcess:
    """``xrdmtl watch`` in its own process group; its stdout lines collected by a thread."""

    def __init__(self, *args: str | Path, cwd: Path | None = None) -> None:
        source = str(Path(xrdmtl.__file__).resolve().parents[1])  # this xrdmtl, from any folder
        path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)
        env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200", PYTHONPATH=path)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xrdmtl", "watch", *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env=env,
            cwd=cwd,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def line_starting(self, prefix: str, timeout: float = 60.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if line.startswith(prefix):
                return line.strip()
        err = self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
        raise TimeoutError(f"no line starting {prefix!r} from xrdmtl watch {err}")

    def signal(self, sig: int) -> tuple[int, str]:
        """Send ``sig`` to the process group (as a terminal's Ctrl-C does); exit code and stderr."""
        os.killpg(self.proc.pid, sig)
        _, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.signal(signal.SIGKILL)
