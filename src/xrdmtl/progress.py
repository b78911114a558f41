"""One progress bar for every long loop: rich on a terminal's stderr; plain lines on a stderr that
is not a terminal (a log file, a batch job), one every :data:`LINE_INTERVAL_S` seconds or at each
tenth of the work once the run has taken that long (a short run prints nothing); silent when
disabled.

::

    with ProgressBar(n, "training", enabled=progress) as bar:
        for ...:
            bar.update(1, info=f"loss {loss:.3f}")
"""

from __future__ import annotations

import sys
import time
from typing import Any

LINE_INTERVAL_S = (
    10.0  # off a terminal: seconds between plain progress lines (and before the first)
)
LINE_MIN_GAP_S = 1.0  # off a terminal: a tenth of the work done prints a line at most this often


def _clock(seconds: float) -> str:
    minutes, sec = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}"


class _Lines:
    """Plain progress lines on stderr: ``training: 30/100 (30%), 0:00:12 elapsed, ~0:00:28 left, info``."""

    def __init__(self, total: float | None, description: str) -> None:
        self.total, self.description, self.info = total, description, ""
        self.done = 0.0
        self.start = self.last = time.monotonic()
        self.tenth = 0
        self.printed = False

    def update(self, completed: float, description: str | None, info: str | None) -> None:
        self.done = completed
        self.description = description or self.description
        self.info = self.info if info is None else info
        now = time.monotonic()
        tenth = int(10 * self.done / self.total) if self.total else 0
        due = now - self.last >= LINE_INTERVAL_S or (
            tenth > self.tenth
            and now - self.start >= LINE_INTERVAL_S
            and now - self.last >= LINE_MIN_GAP_S
        )
        self.tenth = max(self.tenth, tenth)
        if due:
            self.write(now)

    def write(self, now: float, final: bool = False) -> None:
        elapsed = now - self.start
        parts = [f"{self.description}: {self.done:g}" + (f"/{self.total:g}" if self.total else "")]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.0f}%)"
        parts.append(f"{_clock(elapsed)} elapsed")
        if self.total and 0 < self.done < self.total and not final:
            parts.append(f"~{_clock(elapsed * (self.total - self.done) / self.done)} left")
        parts += [self.info] if self.info else []
        print(", ".join(parts) + (" (done)" if final else ""), file=sys.stderr, flush=True)
        self.last, self.printed = now, True

    def close(self) -> None:
        if self.printed:  # a run long enough to report says when it ended
            self.write(time.monotonic(), final=True)


class ProgressBar:
    """A rich progress bar over ``total`` items (description, bar, done/total, elapsed and remaining
    time, a free ``info`` text); plain periodic lines when stderr is not a terminal (see the module
    notes); a no-op when ``enabled`` is false. ``transient``: the bar disappears when closed (else
    its last state stays on screen)."""

    def __init__(
        self, total: float | None, description: str, enabled: bool = True, *, transient: bool = True
    ) -> None:
        self._bar: Any = None
        self._lines: _Lines | None = None
        if not enabled:
            return
        if not sys.stderr.isatty():
            self._lines = _Lines(total, description)
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=Console(stderr=True),
            transient=transient,
        )
        self._task = self._bar.add_task(description, total=total, info="")
        self._bar.start()

    def update(
        self,
        advance: float = 0,
        *,
        completed: float | None = None,
        description: str | None = None,
        info: str | None = None,
    ) -> None:
        """Advance by ``advance`` items (or set ``completed``); change the description or info text."""
        if self._lines is not None:
            done = self._lines.done + advance if completed is None else completed
            self._lines.update(done, description, info)
        if self._bar is None:
            return
        fields: dict[str, Any] = {} if info is None else {"info": info}
        self._bar.update(
            self._task,
            advance=advance or None,
            completed=completed,
            description=description,
            **fields,
        )

    def advance(self, n: float = 1) -> None:
        """Advance by ``n`` items (a callback for workers that report finished chunks)."""
        self.update(n)

    def close(self) -> None:
        if self._lines is not None:
            self._lines.close()
            self._lines = None
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
