"""The live page of ``xrdmtl watch --serve`` in a real headless browser (Debian's chromium; skipped
where it is absent: ``make browser`` installs it): the timeline draws, a frame shows up once its file
lands (pushed by the server, no reload), a click on the timeline opens that pattern. How fast is
measured by ``make bench`` (``benchmarks/bench_watch.py``), not here: a loaded machine would fail a
timed test."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from browser import Browser, find_chromium
from toymodels import toy_model
from watchrun import READING, WatchProcess, land, pattern_bytes

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH: `make browser` installs Debian's chromium (as root)",
)

# painted pixels of a canvas (its 2D context is cleared to transparent before each drawing)
PAINTED = """(() => {{ const c = document.getElementById({id!r});
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }})()"""


@pytest.mark.slow
def test_live_page(tmp_path: Path) -> None:
    pytest.importorskip("websockets", reason="the page test drives chromium with websockets")
    model = toy_model(tmp_path / "toy")
    folder = tmp_path / "run"
    folder.mkdir()
    for k in range(3):
        land(folder / f"f_{k}.xy", pattern_bytes(k))
    assert CHROMIUM is not None
    watcher = WatchProcess(
        folder, "--model", model, "--out", tmp_path / "run.csv", "--serve", "127.0.0.1:0", *READING
    )
    try:
        url = watcher.line_starting("page: ").split()[-1]
        with Browser(CHROMIUM) as page:
            page.goto(url)
            page.wait_for("document.body.dataset.frames === '3'", timeout=30)
            page.wait_for("document.body.dataset.shown === '2'")  # the latest pattern, drawn
            assert page.js(PAINTED.format(id="timeline")) > 2000
            assert page.js(PAINTED.format(id="pattern")) > 2000
            land(folder / "f_3.xy", pattern_bytes(3))
            page.wait_for("document.body.dataset.frames === '4'", timeout=60)  # a hang guard
            x, y = page.js(
                "(() => { const r = document.getElementById('timeline').getBoundingClientRect();"
                " return [r.left + xrdmtl.timelineX(1), r.top + r.height / 2]; })()"
            )
            page.click(x, y)
            page.wait_for("document.body.dataset.shown === '1'")
            assert page.js("document.getElementById('pattern-title').textContent").endswith(
                "f_1.xy"
            )
        code, err = watcher.signal(signal.SIGTERM)  # as a service manager stops it
        assert code == 0 and "stopped (SIGTERM): 4 rows" in err, err
    finally:
        watcher.stop()
