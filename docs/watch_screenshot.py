"""Regenerate docs/watch.png: the live page of ``xrdmtl watch --serve`` on a simulated run of 20 frames
(the shipped model), with frame 12 clicked. Needs chromium (``make browser``).

    PYTHONPATH=src python docs/watch_screenshot.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from browser import Browser, find_chromium  # noqa: E402
from watchrun import WatchProcess, wait_rows  # noqa: E402

N = 20
CLICKED = 12


def main() -> None:
    chromium = find_chromium()
    if chromium is None:
        sys.exit("no chromium: run `make browser` first")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "xrdmtl", "simulate", "frames", "--n", str(N), "--out", "run"],
            check=True,
            cwd=tmp,
        )
        out = Path(tmp) / "run.csv"
        args = ("run/frames", "--poni", "run/geometry.poni", "--mask", "auto", "--out", "run.csv")
        watcher = WatchProcess(*args, "--serve", "127.0.0.1:0", cwd=Path(tmp))
        try:
            url = watcher.line_starting("page: ").split()[-1]
            wait_rows(out, N, timeout=300)
            with Browser(chromium, width=1280, height=900) as page:
                page.goto(url)
                page.wait_for(f"document.body.dataset.frames === '{N}'", timeout=30)
                page.js(f"xrdmtl.state.follow = false; xrdmtl.showPattern({CLICKED})")
                page.wait_for(f"document.body.dataset.shown === '{CLICKED}'", timeout=30)
                page.screenshot(HERE / "watch.png")
        finally:
            watcher.stop()
    print(f"wrote {HERE / 'watch.png'}")


if __name__ == "__main__":
    main()
