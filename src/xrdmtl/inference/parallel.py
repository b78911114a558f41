"""Prediction over files: chunks of files on a process pool or a Dask cluster.

:func:`predict_files` (what :meth:`~xrdmtl.inference.predictor.Predictor.predict_files` runs) reads
files in parallel (a process pool over chunks of files, or one Dask task per chunk with
``scheduler``), turns every bad file into a Prediction with ``error`` set and goes on with the rest;
2D frames go through :func:`xrdmtl.io.frames.patterns_from_frames`. Each chunk may also write a plot
per pattern and the integrated 1D patterns of frames; at the end, a timeline per frame stack.
"""

from __future__ import annotations

import io
import json
import math
import multiprocessing
import os
import re
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..atomic import write_text
from ..errors import PatternError, XrdmtlError
from ..io.read import (
    ReadOptions,
    checked_options,
    expand_inputs,
    frame_index,
    is_frame,
    read_path,
)
from ..physics.grid import QGrid
from ..physics.pattern import Pattern
from ..physics.phases import Reflections
from ..progress import ProgressBar
from .results import Prediction
from .verify import fitted_curve, refined_sticks

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

    from ..io.frames import SpotLines

BATCH_SIZE = 512  # patterns per forward pass inside a chunk


class BatchPredictor(Protocol):
    """What prediction over files needs of a :class:`~xrdmtl.inference.predictor.Predictor`."""

    phases: list[str]
    thresholds: np.ndarray
    grid: QGrid

    def predict_items(
        self, items: Sequence[tuple[str, Pattern | XrdmtlError]], explain: bool
    ) -> tuple[list[Prediction], list[np.ndarray | None]]: ...

    def sticks(self, wavelength: float | None) -> dict[str, Reflections | None]: ...

    @property
    def grain_lines(self) -> SpotLines: ...


def predict_files(
    predictor: BatchPredictor,
    paths: Sequence[str | Path],
    options: ReadOptions | None = None,
    workers: int | None = None,
    progress: bool = True,
    *,
    scheduler: Client | str | None = None,
    explain: bool = False,
    plot_dir: str | Path | None = None,
    save_integrated: str | Path | None = None,
    save_mask: str | Path | None = None,
    expand: bool = True,
) -> list[Prediction]:
    """:meth:`Predictor.predict_files` (its docstring says what each argument does): expand the
    inputs, read and predict them in chunks on a process pool or Dask, write plots and timelines.
    """
    options = checked_options(options)
    if save_mask is not None:
        options = replace(options, keep_mask=True)
    if expand:
        files, bad = expand_inputs(paths, options.poni is not None)
    else:
        files, bad = [str(p) for p in paths], []
    job = _Job(
        read=options,
        explain=explain or plot_dir is not None,
        keep_saliency=explain,
        plot_dir=None if plot_dir is None else str(plot_dir),
        save_integrated=None if save_integrated is None else str(save_integrated),
        save_mask=None if save_mask is None else str(save_mask),
        names=(
            _file_names(files)
            if plot_dir is not None or save_integrated is not None or save_mask is not None
            else {}
        ),
    )
    workers = max(1, workers or _n_cores())
    chunks = _chunks(files, workers)
    if not chunks:  # nothing to read: every argument matched nothing (reported below)
        scheduler = None
    results: list[list[Prediction]] = [[] for _ in chunks]
    with ProgressBar(
        len(files), "predicting", progress and len(files) > 1 and len(chunks) > 1
    ) as bar:
        advance = bar.advance
        if scheduler is not None:
            _run_dask(predictor, chunks, job, scheduler, workers, results, advance)
        elif workers == 1 or len(chunks) <= 1:
            for k, chunk in enumerate(chunks):
                results[k] = _run_chunk(predictor, chunk, job)
                advance(len(chunk))
        else:
            _run_pool(predictor, chunks, job, workers, results, advance)
    preds = [Prediction(label, error=str(err)) for label, err in bad]
    preds += [p for part in results for p in part]
    if plot_dir is not None:
        write_timelines(preds, predictor.phases, predictor.thresholds, plot_dir)
    return preds


def _run_pool(
    predictor: BatchPredictor,
    chunks: list[list[str]],
    job: _Job,
    workers: int,
    results: list[list[Prediction]],
    advance: Callable[[int], None],
) -> None:
    """Chunks on a process pool; each worker gets the predictor once, at its start. On Ctrl-C the
    pending chunks are cancelled and the workers stopped (they ignore SIGINT: no worker traceback)."""
    pool = ProcessPoolExecutor(
        min(workers, len(chunks)),
        mp_context=_pool_context(),
        initializer=_init_worker,
        initargs=(predictor,),
    )
    try:
        with _sigint_deferred():  # workers start deaf to Ctrl-C; one meanwhile stops the run after
            futures: dict[Future[list[Prediction]], int] = {
                pool.submit(_worker_chunk, c, job): k for k, c in enumerate(chunks)
            }
        for fut in as_completed(futures):
            k = futures[fut]
            results[k] = fut.result()
            advance(len(chunks[k]))
    except BaseException:
        processes = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            proc.terminate()
        raise
    pool.shutdown()


def _run_dask(
    predictor: BatchPredictor,
    chunks: list[list[str]],
    job: _Job,
    scheduler: Client | str,
    workers: int,
    results: list[list[Prediction]],
    advance: Callable[[int], None],
) -> None:
    """One Dask task per chunk on ``scheduler`` (a Client, an address, or ``'local'``)."""
    from distributed import Client, LocalCluster
    from distributed import as_completed as dask_completed

    own: list[Client | LocalCluster] = []
    if isinstance(scheduler, Client):
        client = scheduler
    elif scheduler == "local":
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env={"OMP_NUM_THREADS": "1"},
        )
        client = Client(cluster)
        own = [client, cluster]
    else:
        client = _connect(str(scheduler))
        own = [client]
    try:
        shared = client.scatter(predictor, broadcast=True)
        futures = {
            client.submit(_run_chunk, shared, c, job, pure=False): k for k, c in enumerate(chunks)
        }
        for fut in dask_completed(list(futures)):
            k = futures[fut]
            results[k] = fut.result()
            advance(len(chunks[k]))
    finally:
        for obj in own:
            obj.close()


def _connect(address: str) -> Client:
    """A Dask client of the scheduler at ``address``; an :class:`XrdmtlError` naming ``--scheduler``
    when the address is malformed or nothing answers there."""
    from distributed import Client

    try:
        return Client(address)
    except (OSError, ValueError, TypeError, TimeoutError) as exc:
        why = " ".join(str(exc).split()) or type(exc).__name__
        raise XrdmtlError(
            f"--scheduler {address}: cannot connect to a Dask scheduler there ({why})"
        ) from None


# ---------------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class _Job:
    """Reading and output options shared by every chunk of one ``predict_files`` call."""

    read: ReadOptions
    explain: bool
    keep_saliency: bool
    plot_dir: str | None
    save_integrated: str | None
    save_mask: str | None
    names: dict[str, str]  # input file → distinct base name for its plots and integrated files


_WORKER: dict[str, BatchPredictor] = {}


_PRELOAD = [
    "xrdmtl.inference.parallel",
    "xrdmtl.inference.predictor",
    "xrdmtl.model.files",
    "xrdmtl.io.readers",
]


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Ctrl-C deferred while this process starts child processes: SIGINT is blocked in this thread,
    which the children inherit (a Ctrl-C then never hits a worker mid-import, which would print its
    traceback), and one that another thread receives meanwhile is only recorded. Either way the
    run stops with KeyboardInterrupt when the start is over, before any output is written. Only in
    the main thread; where signals cannot be blocked, they are ignored while the workers start."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if not hasattr(signal, "pthread_sigmask"):
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
        return
    caught: list[int] = []
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)  # one still pending is raised here
    if caught:
        raise KeyboardInterrupt


def _pool_context() -> multiprocessing.context.BaseContext:
    """Worker processes fork from a clean server process (``forkserver``, which imports the
    prediction modules once), never from this process: a fork of a process that has run OpenMP code
    (torch, pyFAI) can deadlock in its first parallel region. ``spawn`` where there is no forkserver."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def _init_worker(predictor: BatchPredictor) -> None:
    import signal

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    torch.set_num_threads(1)
    _WORKER["predictor"] = predictor


def _worker_chunk(chunk: list[str], job: _Job) -> list[Prediction]:
    return _run_chunk(_WORKER["predictor"], chunk, job)


def _run_chunk(predictor: BatchPredictor, chunk: Sequence[str], job: _Job) -> list[Prediction]:
    """Read, predict, plot and save one chunk of files, in order (the unit of parallel work)."""
    out: list[Prediction] = []
    batch: list[tuple[str, Pattern | XrdmtlError]] = []

    def flush() -> None:
        preds, inputs = predictor.predict_items(batch, job.explain)
        for (_, item), pred, x in zip(batch, preds, inputs, strict=True):
            if job.plot_dir is not None and x is not None and isinstance(item, Pattern):
                _plot_prediction(predictor, pred, item, x, job)
            if pred.explanation is not None and not job.keep_saliency:
                pred.explanation.saliency = None
        out.extend(preds)
        batch.clear()

    grains = job.read.mask == "auto" and job.read.keep_grains and job.read.poni is not None
    spot_lines = predictor.grain_lines if grains else None
    for path in chunk:
        for label, item in read_path(path, job.read, spot_lines):
            if isinstance(item, Pattern) and "mask_array" in item.meta:
                item = _save_mask(label, item, job)
            if (
                job.save_integrated
                and isinstance(item, Pattern)
                and is_frame(path, job.read.poni is not None)
            ):
                item = _save_integrated(label, item, job)
            batch.append((label, item))
            if len(batch) >= BATCH_SIZE:
                flush()
    if batch:
        flush()
    return out


def _n_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _chunks(files: list[str], workers: int) -> list[list[str]]:
    """About four chunks per worker (for balance), 8–256 files each."""
    if not files:
        return []
    size = min(256, max(8, math.ceil(len(files) / (4 * workers))))
    return [files[i : i + size] for i in range(0, len(files), size)]


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _file_names(files: Sequence[str]) -> dict[str, str]:
    """A distinct output base name per input file (its stem, numbered where stems repeat)."""
    names: dict[str, str] = {}
    used: dict[str, int] = {}
    for f in files:
        stem = _UNSAFE.sub("_", Path(f).stem) or "pattern"
        used[stem] = used.get(stem, 0) + 1
        names[f] = stem if used[stem] == 1 else f"{stem}_{used[stem]}"
    return names


def _plot_prediction(
    predictor: BatchPredictor, pred: Prediction, pattern: Pattern, x: np.ndarray, job: _Job
) -> None:
    """One PNG: the pattern on the model's grid, reference sticks of the phases found, saliency."""
    from ..io.plots import plot_pattern

    name = _output_name(pred.file, job.names)
    cov = x[2] > 0.5
    y = np.where(cov, x[0], np.nan)
    refs = predictor.sticks(pattern.wavelength)
    q = predictor.grid.values
    qs = q[cov]
    e = pred.explanation
    matched = e.matched if e else None
    v, fit = pred.verification, None
    if v is not None:  # sticks at the refined cells, marked where a line supports the call
        refs = {
            n: refined_sticks(v.phases[n], r) if n in v.phases and r is not None else r
            for n, r in refs.items()
        }
        matched = {n: [s[1] for s in c.support] for n, c in v.phases.items()}
        fit = fitted_curve(v, pred.found, x, predictor.grid)
    plot_pattern(
        (q, y),
        pred.found,
        refs,
        saliency=e.saliency if e else None,
        path=Path(str(job.plot_dir)) / f"{name}.png",
        title=pred.file,
        probabilities=pred.probabilities,
        q_range=(float(qs.min()), float(qs.max())),
        background_removed=x[1],
        wavelength=pattern.wavelength,
        matched=matched,
        unexplained=e.unexplained if e else None,
        warning=pred.warning,
        fit=fit,
    )


def integrated_conflicts(
    files: Sequence[str], folder: str | Path, have_geometry: bool, suffix: str = ".xy"
) -> list[Path]:
    """Existing files in ``folder`` that saving the integrated patterns (or, ``suffix='.edf'``, the
    masks) of ``files`` could overwrite: ``<name><suffix>`` and ``<name>_<index><suffix>`` of every
    frame file (see ``save_integrated``)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    frames = [f for f in files if is_frame(f, have_geometry)]
    names = _file_names(files)
    present = {p.name for p in folder.iterdir()}
    taken = []
    for f in frames:
        stem = names[f]
        taken += [
            folder / n
            for n in sorted(present)
            if n == f"{stem}{suffix}"
            or re.fullmatch(rf"{re.escape(stem)}_\d{{5,}}{re.escape(suffix)}", n)
        ]
    return taken


def _output_name(label: str, names: dict[str, str]) -> str:
    """Base name of the outputs of ``label``: its file's distinct name, ``_<index>`` for a frame."""
    frame = frame_index(label)
    base = frame[0] if frame else label
    stem = names.get(base, _UNSAFE.sub("_", Path(base).stem))
    return f"{stem}_{frame[1]:05d}" if frame else stem


def _save_mask(label: str, pattern: Pattern, job: _Job) -> Pattern | XrdmtlError:
    """Write the automatic mask of a frame to ``save_mask/<name>.edf`` (never over a file); the
    pattern (without the array, with the file in its meta), or the error on failure."""
    from ..io.frames import save_mask

    mask = pattern.meta.pop("mask_array")
    path = Path(str(job.save_mask)) / f"{_output_name(label, job.names)}.edf"
    try:
        save_mask(mask, path)
    except FileExistsError:
        return PatternError(f"will not overwrite the existing {path} (--save-mask)", label)
    except OSError as exc:
        return PatternError(f"cannot save the mask to {path}: {exc.strerror or exc}", label)
    pattern.meta["mask_file"] = str(path)
    return pattern


def _version() -> str:
    from .. import __version__

    return __version__


def _save_integrated(label: str, pattern: Pattern, job: _Job) -> Pattern | XrdmtlError:
    """Write an integrated frame as a pyFAI-style text file (a JSON line with the wavelength in m,
    then ``2th_deg I`` columns) that :func:`xrdmtl.io.readers.load_pattern` reads back; the pattern,
    or the error on failure."""
    path = Path(str(job.save_integrated)) / f"{_output_name(label, job.names)}.xy"
    meta = pattern.meta
    masked = meta.get("masked_pixels")
    provenance = {
        "source": label,
        "poni": meta.get("poni"),
        "mask": meta.get("mask_file") or str(job.read.mask),
        "masked_pixels": masked,
        "wavelength_A": pattern.wavelength,
        "xrdmtl": _version(),
    }
    header = [
        f"== xrdmtl integration of {label} ==",
        *([f'{{"wavelength": {pattern.wavelength * 1e-10:.6e}}}'] if pattern.wavelength else []),
        f"xrdmtl {json.dumps(provenance)}",
        f"{pattern.unit:>14} {'I':>14}",
    ]
    try:
        buf = io.StringIO()
        np.savetxt(
            buf,
            np.column_stack([pattern.x, pattern.y]),
            fmt="%.7e",
            header="\n".join(header),
            comments="# ",
        )
        write_text(path, buf.getvalue(), overwrite=False)
    except FileExistsError:
        return PatternError(f"will not overwrite the existing {path} (--save-integrated)", label)
    except OSError as exc:
        return PatternError(
            f"cannot save the integrated pattern to {path}: {exc.strerror or exc}", label
        )
    return pattern


def write_timelines(
    predictions: Iterable[Prediction],
    phases: Sequence[str],
    thresholds: Sequence[float] | np.ndarray,
    folder: str | Path,
) -> list[Path]:
    """A probability-vs-frame plot per frame stack with more than one predicted frame.

    One stack gives ``timeline.png``; several give ``timeline_<stack>.png`` each.
    """
    from ..io.plots import plot_timeline

    stacks: dict[str, list[tuple[int, list[float]]]] = {}
    for p in predictions:
        frame = frame_index(p.file)
        if frame and p.ok:
            stacks.setdefault(frame[0], []).append((frame[1], [p.probabilities[n] for n in phases]))
    stacks = {k: v for k, v in stacks.items() if len(v) > 1}
    written = []
    for stack, rows in stacks.items():
        name = (
            "timeline.png"
            if len(stacks) == 1
            else f"timeline_{_UNSAFE.sub('_', Path(stack).stem)}.png"
        )
        index = np.array([r[0] for r in rows])
        probs = np.array([r[1] for r in rows])
        written.append(
            plot_timeline(
                index, probs, phases, Path(folder) / name, thresholds=list(thresholds), title=stack
            )
        )
    return written
