"""The run's page: a timeline of every phase's probability, the latest (or a clicked) pattern with its
phases' hkl ticks, and the last files with their warnings.

One HTML document (:data:`PAGE`, with its script and style inline, nothing fetched from elsewhere)
serves both uses: ``xrdmtl watch --serve`` (a Starlette app, :func:`make_app`: rows arrive by
server-sent events, a clicked pattern is read again from its file) and ``xrdmtl timeline --out
FILE.html`` (:func:`static_page`: the rows embedded, no server). Rows are CSV rows of the run: the
page plots ``<phase>_a``/``<phase>_c`` refined cells where the CSV has them.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import XrdmtlError
from ..inference.predictor import Predictor
from ..io.read import ReadOptions, read_path
from ..io.runlog import RunTable, cell_columns, number
from ..physics.pattern import Pattern

N_TICKS = 40  # strongest reflections per phase drawn under a pattern
PATTERN_CACHE = 64  # patterns kept in memory for clicks


def _asset(name: str) -> str:
    return (resources.files("xrdmtl") / "data" / "web" / name).read_text(encoding="utf-8")


def render_page(data: dict[str, Any] | None) -> str:
    """The page with its script and style inline; ``data`` (meta and rows) embedded for a static
    page, None for the live one (which listens to ``events``)."""
    embedded = "null" if data is None else json.dumps(data, separators=(",", ":"))
    return (
        _asset("watch.html")
        .replace("/*STYLE*/", _asset("watch.css"))
        .replace("/*SCRIPT*/", _asset("watch.js"))
        .replace("/*DATA*/null", embedded.replace("</", "<\\/"))
    )


class RunState:
    """The rows of a run as the page shows them; thread-safe, with server-sent event listeners."""

    def __init__(self, header: Sequence[str], meta: dict[str, Any]) -> None:
        self.header = list(header)
        self.meta = meta
        self.phases: list[str] = list(meta["phases"])
        self._col = {name: i for i, name in enumerate(self.header)}
        self._cells = cell_columns(self.header, self.phases)
        self.meta["cells"] = self._cells
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._listeners: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[list[dict]]]] = []

    def record(self, index: int, row: Sequence[str]) -> dict[str, Any]:
        """A CSV row as the page's record: probabilities, called phases, warning, error, cells."""
        row = list(row) + [""] * (len(self.header) - len(row))
        col = self._col
        return {
            "i": index,
            "file": row[0],
            "p": [number(row[col[f"p_{p}"]]) for p in self.phases],
            "calls": [p for p in self.phases if row[col[p]] == "1"]
            if self.phases[0] in col
            else [],
            "warning": row[col["warning"]] if "warning" in col else "",
            "error": row[col["error"]] if "error" in col else "",
            "cells": {c: number(row[col[c]]) for c in self._cells},
        }

    def add(self, rows: Sequence[Sequence[str]]) -> None:
        """Append CSV rows and tell every listener."""
        with self._lock:
            start = len(self.records)
            new = [self.record(start + k, r) for k, r in enumerate(rows)]
            self.records.extend(new)
            listeners = list(self._listeners)
        for loop, queue in listeners:
            loop.call_soon_threadsafe(queue.put_nowait, new)

    def listen(self) -> tuple[list[dict[str, Any]], asyncio.Queue[list[dict]]]:
        """The records so far and a queue of those to come (call in the event loop)."""
        queue: asyncio.Queue[list[dict]] = asyncio.Queue()
        with self._lock:
            self._listeners.append((asyncio.get_running_loop(), queue))
            return list(self.records), queue

    def forget(self, queue: asyncio.Queue[list[dict]]) -> None:
        with self._lock:
            self._listeners = [(lp, q) for lp, q in self._listeners if q is not queue]


def run_meta(predictor: Predictor, title: str) -> dict[str, Any]:
    """What the page needs to know of the model: phases and thresholds."""
    return {
        "title": title,
        "phases": list(predictor.phases),
        "thresholds": [float(t) for t in predictor.thresholds],
    }


class PatternViews:
    """A pattern as the page draws it (on the model's Q grid, with hkl ticks), read again from its
    file on request; the last :data:`PATTERN_CACHE` kept."""

    def __init__(self, predictor: Predictor, options: ReadOptions) -> None:
        self.predictor = predictor
        self.options = options
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        grid = predictor.grid
        self.ticks: dict[str, list[list[Any]]] = {}
        for name, ref in predictor.references.items():
            refl = ref.reflections
            if refl is None:
                continue
            inside = np.flatnonzero((refl.q >= grid.q_min) & (refl.q <= grid.q_max))
            strong = inside[np.argsort(-refl.intensity[inside], kind="stable")][:N_TICKS]
            self.ticks[name] = [
                [round(float(refl.q[k]), 4), round(float(refl.intensity[k]), 1), _hkl(refl.hkl[k])]
                for k in strong
            ]

    def _read(self, label: str) -> Pattern:
        base = label.partition("::")[0]
        for name, item in read_path(base, self.options, self.predictor.grain_lines):
            if name == label:
                if isinstance(item, XrdmtlError):
                    raise item
                return item
        raise XrdmtlError(f"{label}: no such pattern in the file any more")

    def view(self, label: str) -> dict[str, Any]:
        """``{q, y, ticks}``: the pattern on the model's grid (covered points), min–max scaled."""
        with self._lock:
            if label in self._cache:
                self._cache.move_to_end(label)
                return self._cache[label]
        pattern = self._read(label)
        intensity, coverage = pattern.on_grid(self.predictor.grid)
        q = self.predictor.grid.values[coverage]
        y = intensity[coverage]
        span = float(y.max() - y.min()) if y.size else 0.0
        y = (y - y.min()) / span if span > 0 else np.zeros_like(y)
        view = {
            "q": np.round(q, 4).tolist(),
            "y": np.round(y, 4).tolist(),
            "ticks": self.ticks,
        }
        with self._lock:
            self._cache[label] = view
            while len(self._cache) > PATTERN_CACHE:
                self._cache.popitem(last=False)
        return view


def _hkl(hkl: Any) -> str:
    return " ".join(str(int(v)) for v in np.atleast_1d(hkl))


def make_app(state: RunState, views: Callable[[str], dict[str, Any]] | None) -> Any:
    """The Starlette app: ``/`` the page, ``/events`` the rows (server-sent events),
    ``/api/pattern/{i}`` the i-th row's pattern."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    page = render_page(None)

    async def index(_: Request) -> Response:
        return HTMLResponse(page)

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            records, queue = state.listen()
            try:
                yield _sse("meta", state.meta)
                yield _sse("rows", records)
                while not await request.is_disconnected():
                    try:
                        new = await asyncio.wait_for(queue.get(), timeout=15)
                    except asyncio.TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    yield _sse("rows", new)
            finally:
                state.forget(queue)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    def pattern(request: Request) -> Response:
        i = int(request.path_params["i"])
        if views is None or not 0 <= i < len(state.records):
            return JSONResponse({"error": f"no pattern {i}"}, status_code=404)
        record = state.records[i]
        try:
            return JSONResponse({**record, **views(record["file"])})
        except XrdmtlError as exc:
            return JSONResponse({**record, "q": [], "y": [], "ticks": {}, "read_error": str(exc)})

    return Starlette(
        routes=[
            Route("/", index),
            Route("/events", events),
            Route("/api/pattern/{i:int}", pattern),
        ]
    )


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0: any free port); one clear error if it cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise XrdmtlError(
            f"cannot serve the page on {host}:{port}: {exc.strerror or exc}"
        ) from None
    sock.listen(64)
    return sock


class PageServer:
    """uvicorn serving ``app`` on a bound socket (:func:`bind`) in a background thread."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        import uvicorn

        self.sock = sock
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="xrdmtl-page", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self.sock.close()


def timeline_png(table: RunTable, path: str | Path) -> Path:
    """The run's timeline as a PNG: each phase's probability per row (failed rows marked red),
    and below it each refined cell column the CSV holds."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from ..io.plots import phase_color, readable, save_figure

    index = np.arange(len(table.files))
    cells = [c for c, v in table.cells.items() if any(x is not None for x in v)]
    with readable():
        fig = Figure(figsize=(11, 4.2 + 2.0 * len(cells)), layout="constrained")
        axes = fig.subplots(1 + len(cells), 1, sharex=True, squeeze=False)[:, 0]
        for t, name in enumerate(table.phases):
            p = np.array([np.nan if v is None else v for v in table.probabilities[name]])
            axes[0].plot(
                index,
                p,
                color=phase_color(t),
                lw=1.2,
                marker="." if p.size < 300 else None,
                label=name,
            )
        failed = index[[bool(e) for e in table.errors]]
        if failed.size:
            axes[0].plot(failed, np.zeros(failed.size), "|", color="#c00", ms=12, label="failed")
        axes[0].set_ylim(-0.02, 1.02)
        axes[0].set_ylabel("probability")
        axes[0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        for ax, col in zip(axes[1:], cells, strict=True):
            v = np.array([np.nan if x is None else x for x in table.cells[col]])
            t = next((k for k, p in enumerate(table.phases) if col.startswith(f"{p}_")), 0)
            ax.plot(index, v, ".", color=phase_color(t))
            ax.set_ylabel(f"{col} (Å)")
        axes[-1].set_xlabel("frame")
        axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
        return save_figure(fig, path)


def timeline_html(table: RunTable, path: str | Path, title: str) -> Path:
    """The run's page with the CSV's rows embedded (no server): timeline, cells, last files."""
    from ..atomic import write_text

    state = RunState(table.header, {"title": title, "phases": table.phases, "thresholds": None})
    state.add(table.rows)
    write_text(path, render_page({"meta": state.meta, "rows": state.records}))
    return Path(path)
