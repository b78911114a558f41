"""Watching a folder during a run: each pattern or frame file predicted once, as soon as it is complete.

:class:`FolderWatch` finds the files: file-system events (``watchdog``: inotify on Linux) wake it
as files are written, with a full listing of the folder at the start and every :data:`RESCAN`
seconds as a safety net; with ``poll`` (network file systems, where events do not arrive) it lists
the folder every ``poll`` seconds instead. A file is *ready* once its size and modification time
have stayed unchanged for ``settle`` seconds (``closed_settle`` after its writer closed it, where
events tell); a ready file waits for an earlier one (natural order: ``f_2`` before ``f_10``)
still being written, for at most ``hold`` seconds, so the rows follow the run.

:func:`watch` predicts ready files in small batches with one :class:`~xrdmtl.inference.predictor.Predictor`
(the model loaded once), exactly as ``xrdmtl predict`` does, and appends their rows to a
:class:`~xrdmtl.io.runlog.RunLog`. A file that changed while it was read (a writer that paused
longer than the settle time) is read again once stable, and so is one that fails to read until it
has not changed for ``error_grace`` seconds; a file removed before it is read is skipped; a bad file
then gets its row with the error. Files the log already holds are never predicted again, so a
restart resumes the run.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io.read import FRAME_EXTENSIONS, ReadOptions
from ..io.readers import PATTERN_EXTENSIONS
from ..io.runlog import RunLog
from .predictor import Predictor
from .results import Prediction

RESCAN = 30.0  # s between full listings of the folder when file-system events are used
TICK = 0.05  # s between checks of files still settling
IDLE_WAKE = 0.5  # s: the longest sleep, so that a stop request is seen
EMPTY_SETTLE = 2.0  # s an empty file must stay empty before it is read (writers create, then fill)
EXTENSIONS = PATTERN_EXTENSIONS | FRAME_EXTENSIONS
TEMPORARY = (".tmp", ".part", ".partial", ".crdownload", ".swp", ".lock", "~")


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders ``f_2`` before ``f_10`` (digit runs compared as numbers)."""
    return tuple(int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name))


@dataclass
class WatchSettings:
    """How files are found and judged complete (seconds)."""

    settle: float = 0.5  # size and mtime unchanged this long: the file is complete
    closed_settle: float = 0.05  # the same, after its writer closed it (file-system events)
    poll: float | None = None  # list the folder this often instead of using file-system events
    hold: float = 10.0  # longest a ready file waits for an earlier-named one still being written
    batch: int = 16  # files per forward pass when many are ready at once
    error_grace: float = 2.0  # a file that fails to read is read again until unchanged this long


@dataclass
class _Pending:
    """A file seen but not yet predicted: its last size and mtime, since when they hold."""

    stat: tuple[int, int]
    since: float
    first_seen: float
    closed: float = 0.0  # when its writer last closed it (0: not seen)


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


class FolderWatch:
    """The files of ``folder`` not in ``done`` (names), offered once each when complete."""

    def __init__(
        self,
        folder: str | Path,
        done: set[str],
        settings: WatchSettings,
        exclude: Sequence[str | Path] = (),
    ) -> None:
        self.folder = Path(folder)
        self.done = done
        self.settings = settings
        self.exclude = {os.path.realpath(p) for p in exclude}
        self.pending: dict[str, _Pending] = {}
        self.wake = threading.Event()
        self._touched: set[str] = set()
        self._closed: set[str] = set()
        self._lock = threading.Lock()
        self._observer: Any = None
        self._next_scan = 0.0

    # ------------------------------------------------------------------ discovery

    def wanted(self, name: str) -> bool:
        """A file name that may be a pattern (what ``predict`` reads in a folder, frames included:
        without ``--poni`` their rows say so): not hidden, not a writer's temporary file, not done."""
        return (
            not name.startswith(".")
            and os.path.splitext(name)[1].lower() in EXTENSIONS
            and not name.lower().endswith(TEMPORARY)
            and name not in self.done
            and os.path.realpath(self.folder / name) not in self.exclude
        )

    def start(self) -> None:
        """Start the file-system observer (unless polling); the first :meth:`ready` lists the folder."""
        if self.settings.poll is None:
            self._observer = _observer(self.folder, self._event)
        self.wake.set()

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def _event(self, path: str, closed: bool) -> None:
        """Called from the observer's thread for every event on a file of the folder."""
        name = os.path.basename(path)
        if os.path.dirname(os.path.abspath(path)) != os.path.abspath(self.folder):
            return
        with self._lock:
            self._touched.add(name)
            if closed:
                self._closed.add(name)
        self.wake.set()

    def _scan(self, now: float) -> None:
        """List the folder: every wanted file joins the pending ones."""
        try:
            with os.scandir(self.folder) as entries:
                names = [e.name for e in entries if e.is_file()]
        except OSError:
            names = []
        with self._lock:
            self._touched.update(names)
        self._next_scan = now + (self.settings.poll or RESCAN)

    # ------------------------------------------------------------------ readiness

    def _update(self, now: float) -> None:
        """Stat the touched and pending files: new ones join, changed ones start settling again."""
        with self._lock:
            touched, self._touched = self._touched, set()
            closed, self._closed = self._closed, set()
        for name in touched | set(self.pending):
            if not self.wanted(name):
                self.pending.pop(name, None)
                continue
            stat = _stat(self.folder / name)
            entry = self.pending.get(name)
            if stat is None:  # removed (or never a file we can read): forget it
                self.pending.pop(name, None)
            elif entry is None:
                self.pending[name] = _Pending(stat, now, now)
            elif stat != entry.stat:
                entry.stat, entry.since = stat, now
            if name in closed and name in self.pending:
                self.pending[name].closed = now

    def _complete(self, entry: _Pending, now: float) -> bool:
        if entry.stat[0] == 0:
            return now - entry.since >= max(self.settings.settle, EMPTY_SETTLE)
        quiet = now - entry.since
        if entry.closed >= entry.since and quiet >= self.settings.closed_settle:
            return True
        return quiet >= self.settings.settle

    def ready(self) -> list[Path]:
        """The complete files, in natural order, that no earlier-named file still being written
        holds back (each is offered once: it leaves the pending files)."""
        now = time.monotonic()
        if now >= self._next_scan:
            self._scan(now)
        self._update(now)
        out = []
        for name in sorted(self.pending, key=natural_key):
            entry = self.pending[name]
            if self._complete(entry, now):
                out.append(name)
            elif now - entry.first_seen < self.settings.hold:
                break  # an earlier file is still being written: the later ones wait for it
        for name in out:
            del self.pending[name]
        return [self.folder / name for name in out]

    def retry(self, path: Path, stat: tuple[int, int] | None) -> None:
        """Offer ``path`` again once it is stable (it changed while it was read)."""
        if stat is not None:
            now = time.monotonic()
            self.pending[path.name] = _Pending(stat, now, now)

    def wait(self) -> None:
        """Sleep until an event, the next check of settling files, the next listing, or at most
        :data:`IDLE_WAKE` seconds (so that a stop request is seen)."""
        now = time.monotonic()
        timeout = min(max(0.0, self._next_scan - now), IDLE_WAKE)
        if self.pending:
            timeout = min(timeout, TICK)
        self.wake.wait(timeout)
        self.wake.clear()


def _observer(folder: Path, callback: Callable[[str, bool], None]) -> Any:
    """A started watchdog observer calling ``callback(path, closed)`` for each file event."""
    from watchdog.events import FileClosedEvent, FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.is_directory:
                return
            path = getattr(event, "dest_path", "") or event.src_path
            callback(os.fsdecode(path), isinstance(event, FileClosedEvent))

    observer = Observer()
    observer.schedule(Handler(), str(folder), recursive=False)
    observer.daemon = True
    observer.start()
    return observer


@dataclass
class WatchReport:
    """What a watch did: rows appended, of which failed, files skipped (removed before read)."""

    rows: int = 0
    failed: int = 0
    skipped: list[str] = field(default_factory=list)


def warm_up(predictor: Predictor, options: ReadOptions) -> None:
    """Pay the one-time costs before the first file lands: the network's first pass and, for
    frames, the integration engine (and the automatic mask's pixel bins)."""
    import numpy as np

    from ..io.read import cached_integrator
    from ..model.preprocess import N_CHANNELS

    predictor.model.predict_proba(np.zeros((1, N_CHANNELS, predictor.grid.n), np.float32))
    if options.poni is not None:
        integrator = cached_integrator(str(options.poni))
        blank = np.ones(integrator.shape, np.float32)
        integrator.integrate(blank)
        if options.mask == "auto":
            integrator.auto_mask(blank)


RowsCallback = Callable[[list[Prediction], list[list[str]]], None]


def _predict_batch(
    predictor: Predictor,
    files: list[Path],
    options: ReadOptions,
    fw: FolderWatch,
    report: WatchReport,
) -> list[Prediction]:
    """Predict ``files``; the predictions of the files that stayed as they were read, in order
    (a file that changed is offered again, one removed is skipped)."""
    before = {f: _stat(f) for f in files}
    preds = predictor.predict_files(
        [str(f) for f in files], options, workers=1, progress=False, expand=False
    )
    by_file: dict[str, list[Prediction]] = {}
    for p in preds:
        by_file.setdefault(p.file.partition("::")[0], []).append(p)
    kept: list[Prediction] = []
    held = False  # a file is read again: the later ones too, so that the rows keep the run's order
    for f in files:
        after = _stat(f)
        mine = by_file.get(str(f), [])
        if after is None:
            report.skipped.append(str(f))
        elif (
            held
            or after != before[f]
            or (
                any(not p.ok for p in mine)
                and time.time() - after[1] / 1e9 < fw.settings.error_grace
            )
        ):  # changed while read, or failed while it may still be written (a writer's pause)
            fw.retry(f, after)
            held = True
        else:
            kept.extend(mine)
    return kept


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Ctrl-C during the block is raised when it ends (in the main thread; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda sig, _: caught.append(sig))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt


def watch(
    predictor: Predictor,
    folder: str | Path,
    log: RunLog,
    options: ReadOptions | None = None,
    settings: WatchSettings | None = None,
    stop: threading.Event | None = None,
    on_rows: RowsCallback | None = None,
    report: WatchReport | None = None,
) -> WatchReport:
    """Predict every file of ``folder`` not in ``log`` as it completes, until ``stop`` is set
    (or Ctrl-C). ``on_rows(predictions, rows)`` is called after each batch is appended; ``report``
    (returned, or kept up to date where given: it survives a Ctrl-C) counts what was done."""
    settings = settings or WatchSettings()
    stop = stop or threading.Event()
    fw = FolderWatch(folder, log.done, settings, exclude=[log.path])
    report = report if report is not None else WatchReport()
    options = options or ReadOptions()
    fw.start()
    try:
        while not stop.is_set():
            ready = fw.ready()
            if not ready:
                fw.wait()
                continue
            for i in range(0, len(ready), settings.batch):
                if stop.is_set():
                    break
                preds = _predict_batch(
                    predictor, ready[i : i + settings.batch], options, fw, report
                )
                rows = [p.row(predictor.phases, predictor.verify) for p in preds]
                with _interrupts_deferred():  # rows written, counted and shown together
                    log.append(rows)
                    report.rows += len(rows)
                    report.failed += sum(not p.ok for p in preds)
                    if on_rows is not None and rows:
                        on_rows(preds, rows)
    finally:
        fw.stop()
    return report
