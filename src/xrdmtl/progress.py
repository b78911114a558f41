"""One progress bar for every long loop: rich, on stderr, silent when disabled or not on a terminal.

::

    with ProgressBar(n, "training", enabled=progress) as bar:
        for ...:
            bar.update(1, info=f"loss {loss:.3f}")
"""

from __future__ import annotations

import sys
from typing import Any


class ProgressBar:
    """A rich progress bar over ``total`` items (description, bar, done/total, elapsed and remaining
    time, a free ``info`` text), or a no-op when ``enabled`` is false or stderr is not a terminal.
    ``transient``: the bar disappears when closed (else its last state stays on screen)."""

    def __init__(
        self, total: float | None, description: str, enabled: bool = True, *, transient: bool = True
    ) -> None:
        self._bar: Any = None
        if not (enabled and sys.stderr.isatty()):
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
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
