"""Batched prediction: patterns and files in, per-phase probabilities, calls, warnings and evidence out.

:class:`Predictor` wraps a model (the shipped default, a model folder, or a loaded model). For a batch
it resamples every pattern onto the model's Q grid, builds the model input with one
:func:`~xrdmtl.preprocess.model_input` call and runs one forward pass, then checks each pattern:

- **coverage** (an *error*, the pattern gets no call): data on less than :data:`MIN_COVERAGE` of the
  model's Q grid, or on none of the strongest reflections of any of the model's phases. A phase whose
  strongest reflections all fall outside the data gets a *warning* (its call rests on weak reflections);
- **unknown phase** (a *warning*): strong, significant peaks of the background-removed pattern that no
  called phase explains (reflections within a lattice tolerance, 3% for bastnaesite, 1% otherwise);
- **out of distribution** (a *warning*): a probability within :data:`UNCERTAIN_MARGIN` of its threshold;
- **no evidence** (a *warning*): a phase called although none of its reflections has a detected peak.

Each :class:`Prediction` carries an :class:`~xrdmtl.explain.Explanation`: the detected peaks, the
reference reflections each phase matched, and (with ``explain=True``) the saliency over Q.

:meth:`Predictor.predict_files` reads files in parallel (a process pool over chunks of files, or one
Dask task per chunk with ``scheduler``), turns every bad file into a Prediction with ``error`` set and
goes on with the rest; 2D frames go through :func:`xrdmtl.frames.patterns_from_frames`.
"""

from __future__ import annotations

import csv
import io
import math
import multiprocessing
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import write_text
from .errors import LabelsError, PatternError, PhaseError, XrdmtlError
from .explain import (
    Explanation,
    ReferenceWindows,
    find_peaks_batch,
    lattice_tolerance,
    saliency,
    top_regions,
)
from .patterns import Pattern
from .phases import Reflections, lorentz_polarization
from .preprocess import model_input
from .units import q_to_tth

MIN_COVERAGE = 0.25  # fraction of the model's Q grid a pattern must cover
N_STRONG = 3  # a phase's strongest reflections that coverage is checked against
UNCERTAIN_MARGIN = 0.15  # |p − threshold| below this → "uncertain" warning
UNEXPLAINED_MIN_HEIGHT = 0.2  # of the strongest background-removed peak
UNEXPLAINED_MIN_SNR = 8.0  # noise units
BATCH_SIZE = 512  # patterns per forward pass inside a chunk
FRAME_EXTENSIONS = frozenset(
    {".edf", ".tif", ".tiff", ".cbf", ".h5", ".hdf5", ".nxs", ".nx5", ".img", ".mccd", ".sfrm",
     ".mar3450", ".mar2300", ".gfrm", ".esperanto", ".fabio"}
)
ONE_D_EXTENSIONS = frozenset({".xy", ".xye", ".dat", ".chi", ".txt", ".csv", ".plv", ".xrdml"})


def default_model_dir() -> Path:
    """Folder of the model shipped with the package."""
    return Path(str(resources.files("xrdmtl") / "data" / "models" / "default"))


@dataclass
class Prediction:
    """The result for one pattern (a file, or one frame ``stack.h5::17``).

    ``probabilities`` and ``calls`` (0/1) are keyed by phase in the model's order; both are empty when
    ``error`` is set. ``warning`` and ``error`` are one line each ("" when none).
    """

    file: str
    probabilities: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    warning: str = ""
    error: str = ""
    explanation: Explanation | None = None

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def found(self) -> list[str]:
        """Names of the phases called present."""
        return [name for name, c in self.calls.items() if c]

    def row(self, phases: Sequence[str]) -> list[str]:
        """The CSV row: file, p_<phase>…, <phase>…, warning, error."""
        if self.error:
            return [self.file, *([""] * (2 * len(phases))), self.warning, self.error]
        probs = [f"{self.probabilities[p]:.4f}" for p in phases]
        calls = [str(int(self.calls[p])) for p in phases]
        return [self.file, *probs, *calls, self.warning, self.error]


def csv_header(phases: Sequence[str]) -> list[str]:
    """Columns of the predictions CSV (DESIGN.md contract)."""
    return ["file", *(f"p_{p}" for p in phases), *phases, "warning", "error"]


def write_csv(predictions: Sequence[Prediction], phases: Sequence[str], out: str | Path | None = None) -> str:
    """The predictions as CSV text; written atomically to ``out`` (temp file + ``os.replace``) if given."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(csv_header(phases))
    writer.writerows(p.row(phases) for p in predictions)
    text = buf.getvalue()
    if out is not None:
        write_text(out, text, newline="")
    return text


def read_labels(
    csv_path: str | Path, phases: Sequence[str], note: Callable[[str], None] | None = None
) -> tuple[list[str], np.ndarray]:
    """Read a labels CSV (``file,<phase>,…`` with 0/1 values, ``file`` relative to the CSV's folder).

    Returns the files (paths as strings, a ``::index`` frame suffix kept) and a uint8 array
    ``(n, len(phases))`` in the order of ``phases``. Columns of other phases are ignored, with a note
    passed to ``note``; a missing phase column, a bad value or an empty table is a :class:`LabelsError`.
    """
    path = Path(csv_path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise LabelsError(f"cannot read labels: {exc.strerror or exc}", path) from None
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        raise LabelsError("empty labels file", path)
    header = [c.strip() for c in rows[0]]
    if not header or header[0].lower() != "file":
        raise LabelsError(f"first column must be 'file', got {header[0]!r}", path)
    missing = [p for p in phases if p not in header]
    if missing:
        raise LabelsError(f"no column for the model's phase(s) {', '.join(missing)} (columns: {', '.join(header)})", path)
    extra = [c for c in header[1:] if c not in phases]
    if extra and note is not None:
        note(f"{path}: ignoring column(s) {', '.join(extra)} (not phases of the model)")
    cols = [header.index(p) for p in phases]
    files: list[str] = []
    labels = np.zeros((len(rows) - 1, len(phases)), dtype=np.uint8)
    for i, row in enumerate(rows[1:]):
        line = i + 2
        if len(row) < len(header):
            raise LabelsError(f"line {line} has {len(row)} fields, the header {len(header)}", path)
        name = row[0].strip()
        if not name:
            raise LabelsError(f"line {line} has no file name", path)
        for j, c in enumerate(cols):
            value = row[c].strip()
            if value not in ("0", "1"):
                raise LabelsError(f"line {line}, column {header[c]}: {value!r} is not 0 or 1", path)
            labels[i, j] = int(value)
        base, sep, frame = name.partition("::")
        full = Path(base) if Path(base).is_absolute() else path.parent / base
        files.append(f"{full}{sep}{frame}")
    if not files:
        raise LabelsError("no labeled rows", path)
    return files, labels


def evaluate_labels(
    predictor: Predictor, labels_csv: str | Path, note: Callable[[str], None] | None = None,
    **read_options: Any,
) -> dict:
    """Predict the files of a labels CSV and score the calls against the labels.

    ``read_options`` go to :meth:`Predictor.predict_files` (wavelength, x_unit, poni, mask, workers,
    scheduler). Returns a JSON-ready dict: ``n``, ``exact_match``, per-phase metrics under
    ``phases`` (see :func:`xrdmtl.metrics.classification_report`), ``misclassified`` and ``failed``
    (files named as in the CSV).
    """
    from .metrics import classification_report

    files, labels = read_labels(labels_csv, predictor.phases, note)
    folder = Path(labels_csv).parent
    bases = list(dict.fromkeys(f.rpartition("::")[0] if _frame_index(f) else f for f in files))
    by_file = {p.file: p for p in predictor.predict_files(bases, expand=False, **read_options)}
    phases = predictor.phases
    keep, failed, misclassified = [], [], []
    for i, f in enumerate(files):
        shown = os.path.relpath(f, folder)
        pred = by_file.get(f)
        if pred is None or not pred.ok:
            failed.append({"file": shown, "error": pred.error if pred else f"{f}: no such frame"})
            continue
        keep.append(i)
        calls = np.array([pred.calls[n] for n in phases])
        if (calls != labels[i]).any():
            misclassified.append({
                "file": shown,
                "labels": [n for n, v in zip(phases, labels[i], strict=True) if v],
                "calls": pred.found,
                "probabilities": {n: round(pred.probabilities[n], 4) for n in phases},
                "warning": pred.warning,
            })
    y = labels[keep]
    calls = np.array([[by_file[files[i]].calls[n] for n in phases] for i in keep], dtype=np.uint8)
    scores = np.array([[by_file[files[i]].probabilities[n] for n in phases] for i in keep])
    report = classification_report(y, calls.reshape(len(keep), len(phases)),
                                   scores.reshape(len(keep), len(phases)), phases)
    return {**report, "labels_file": str(labels_csv), "misclassified": misclassified, "failed": failed}


@dataclass
class _Reference:
    """What the predictor knows of one phase's reflections on the model's grid."""

    reflections: Reflections | None
    windows: ReferenceWindows  # where each strong reflection may show up on the grid
    strong: np.ndarray  # grid indices of the strongest reflections inside the grid


def _phase_reference(name: str, q_max: float) -> tuple[Reflections, float] | None:
    """Reflections (Q-space intensities) and matching tolerance of a library phase; None if unknown."""
    from .phases import get_phase

    try:
        phase = get_phase(name)
    except PhaseError:
        return None
    return phase.reflections(None, q_max=q_max), lattice_tolerance(name, phase.meta.get("lattice_range"))


def sticks_at(reflections: Reflections, wavelength: float | None) -> Reflections:
    """The reflections with the Lorentz–polarisation factor of ``wavelength`` (Å) applied, if known."""
    if wavelength is None:
        return reflections
    tth = q_to_tth(reflections.q, wavelength)
    ok = np.isfinite(tth)
    inten = np.where(ok, reflections.intensity * lorentz_polarization(np.where(ok, tth, 90.0)), 0.0)
    inten = 100 * inten / inten.max() if inten.max() > 0 else inten
    return Reflections(reflections.hkl, reflections.d, reflections.q, tth, inten,
                       reflections.multiplicity, wavelength)


class Predictor:
    """Calls the phases of a model in patterns and files.

    ``model``: None (the shipped default model), a model folder or ``.safetensors`` file, or a
    :class:`~xrdmtl.models.LoadedModel`. ``threshold`` overrides every phase's threshold (else the
    model's, default 0.5). ``references`` maps phase names to (reflections, relative Q tolerance)
    (default: the phase library, looked up by name; a phase without one gets no sticks and no
    unknown-peak check).
    """

    def __init__(
        self,
        model: Any = None,
        threshold: float | None = None,
        references: dict[str, tuple[Reflections, float] | None] | None = None,
    ) -> None:
        from .models import load_model

        if model is None:
            model = load_model(default_model_dir())
        elif isinstance(model, (str, Path)):
            model = load_model(model)
        self.model = model
        self.phases: list[str] = list(model.phases)
        self.grid = model.grid
        meta_thresholds = np.asarray(model.meta.get("thresholds", [0.5] * len(self.phases)), dtype=float)
        self.thresholds = np.full(len(self.phases), threshold, dtype=float) if threshold is not None else meta_thresholds
        refs = references if references is not None else {
            name: _phase_reference(name, self.grid.q_max) for name in self.phases
        }
        self.references = {name: self._reference(refs.get(name)) for name in self.phases}

    def _reference(self, ref: tuple[Reflections, float] | None) -> _Reference:
        if ref is None:
            empty = np.zeros(0, dtype=int)
            return _Reference(None, ReferenceWindows(np.zeros(0), empty, empty), empty)
        refl, tol = ref
        inside = (refl.q >= self.grid.q_min) & (refl.q <= self.grid.q_max)
        order = np.flatnonzero(inside)[np.argsort(-refl.intensity[inside], kind="stable")][:N_STRONG]
        strong = np.clip(np.round(self.grid.index(refl.q[order])).astype(int), 0, self.grid.n - 1)
        return _Reference(refl, ReferenceWindows.build(refl, self.grid, tol), strong)

    # ------------------------------------------------------------------------------ patterns

    def predict_patterns(
        self, patterns: Sequence[Pattern], explain: bool = False, labels: Sequence[str] | None = None
    ) -> list[Prediction]:
        """Predict a batch of patterns: one model-input call and one forward pass for the batch.

        ``labels`` name the patterns in the results (default: each pattern's ``source``);
        ``explain`` adds the saliency maps (one backward pass per phase for the batch).
        """
        names = list(labels) if labels is not None else [p.source for p in patterns]
        return self._predict_items(list(zip(names, patterns, strict=True)), explain)[0]

    def _predict_items(
        self, items: Sequence[tuple[str, Pattern | XrdmtlError]], explain: bool
    ) -> tuple[list[Prediction], list[np.ndarray | None]]:
        """Predictions for (label, pattern or error) items, and each one's model input (None if failed)."""
        results: list[Prediction | None] = [None] * len(items)
        inputs: list[np.ndarray | None] = [None] * len(items)
        good: list[int] = []
        grids: list[tuple[np.ndarray, np.ndarray]] = []
        for i, (label, item) in enumerate(items):
            if isinstance(item, XrdmtlError):
                results[i] = Prediction(label, error=str(item))
                continue
            try:
                intensity, coverage = item.on_grid(self.grid)
            except XrdmtlError as exc:
                results[i] = Prediction(label, error=str(exc))
                continue
            problem = self._coverage_problem(coverage)
            if problem:
                results[i] = Prediction(label, error=str(PatternError(problem, label)))
                continue
            good.append(i)
            grids.append((intensity, coverage))
        if good:
            intensity = np.stack([g[0] for g in grids])
            coverage = np.stack([g[1] for g in grids])
            x = model_input(intensity, coverage, self.grid.step)
            probs = np.asarray(self.model.predict_proba(x), dtype=float)
            sal = saliency(self.model.net, x) if explain else None
            done = self._finish([items[i][0] for i in good], x, probs, coverage, sal)
            for k, (i, pred) in enumerate(zip(good, done, strict=True)):
                results[i] = pred
                inputs[i] = x[k]
        return [r for r in results if r is not None], inputs

    def _coverage_problem(self, coverage: np.ndarray) -> str:
        """Why a pattern with this grid coverage cannot be called ("" if it can)."""
        frac = float(coverage.mean())
        g = self.grid
        if frac < MIN_COVERAGE:
            return (f"covers only {frac:.0%} of the model's Q range {g.q_min:.2f}–{g.q_max:.2f} Å⁻¹ "
                    f"(need at least {MIN_COVERAGE:.0%})")
        known = [r for r in self.references.values() if r.strong.size]
        if known and not any(coverage[r.strong].any() for r in known):
            q = g.values[coverage]
            return (f"has data only at Q {q.min():.2f}–{q.max():.2f} Å⁻¹, where none of "
                    f"{', '.join(self.phases)} has a strong reflection")
        return ""

    def _finish(
        self, names: Sequence[str], x: np.ndarray, probs: np.ndarray, coverage: np.ndarray,
        sal: np.ndarray | None,
    ) -> list[Prediction]:
        """Calls, warnings and explanations for a batch of model inputs and their probabilities."""
        q = self.grid.values
        refs = list(self.references.values())
        calls = (probs >= self.thresholds[None, :]).astype(np.uint8)
        rows, idx, height, snr = find_peaks_batch(x, self.grid)
        explains = np.stack([r.windows.mask(self.grid.n) for r in refs])  # (T, G)
        known = np.array([r.reflections is not None for r in refs])
        explained = (calls[rows].astype(bool) & explains[:, idx].T).any(axis=1)
        lonely = (height >= UNEXPLAINED_MIN_HEIGHT) & (snr >= UNEXPLAINED_MIN_SNR) & ~explained
        count = np.zeros((len(names), self.grid.n + 1), dtype=np.int32)
        np.add.at(count, (rows, idx + 1), 1)
        count = np.cumsum(count, axis=1)
        hits = [r.windows.hits(count) for r in refs]  # per phase (B, R)
        no_data = np.stack([~coverage[:, r.strong].any(axis=1) if r.strong.size else np.zeros(len(names), bool)
                            for r in refs], axis=1)
        # a call with no detected peak at any of the phase's reflections rests on nothing one can check
        peakless = calls.astype(bool) & known[None, :] & ~np.stack([h.any(axis=1) for h in hits], axis=1)
        uncertain = np.abs(probs - self.thresholds[None, :]) < UNCERTAIN_MARGIN
        unchecked = (calls.astype(bool) & ~known[None, :]).any(axis=1)
        split = np.searchsorted(rows, np.arange(len(names) + 1))
        out = []
        for b, name in enumerate(names):
            sl = slice(split[b], split[b + 1])
            peak_q = q[idx[sl]]
            warnings = [f"no data where {self.phases[t]}'s strongest reflections lie "
                        f"(Q {q[refs[t].strong].min():.2f}–{q[refs[t].strong].max():.2f} Å⁻¹)"
                        for t in np.flatnonzero(no_data[b])]
            if peakless[b].any():
                warnings.append("called without a peak at any of its reflections: "
                                + ", ".join(self.phases[t] for t in np.flatnonzero(peakless[b])))
            if uncertain[b].any():
                near = ", ".join(f"{self.phases[t]} p={probs[b, t]:.2f}" for t in np.flatnonzero(uncertain[b]))
                warnings.append(f"uncertain (p near the threshold): {near}")
            unexplained = [] if unchecked[b] else peak_q[lonely[sl]].tolist()
            if unexplained:
                shown = ", ".join(f"{v:.2f}" for v in unexplained[:6])
                more = f" and {len(unexplained) - 6} more" if len(unexplained) > 6 else ""
                warnings.append(f"unexplained peaks at Q={shown}{more} Å⁻¹ "
                                "(not from the phases called: an unknown phase?)")
            expl = Explanation(
                peaks=list(zip(peak_q.tolist(), height[sl].tolist(), strict=True)),
                matched={n: r.windows.q[h[b]].tolist() for (n, r), h in zip(self.references.items(), hits,
                                                                            strict=True)
                         if r.reflections is not None},
                unexplained=unexplained,
            )
            if sal is not None:
                expl.saliency = {n: sal[b, t] for t, n in enumerate(self.phases)}
                expl.regions = {n: top_regions(sal[b, t], q) for t, n in enumerate(self.phases)}
            out.append(Prediction(
                name,
                probabilities=dict(zip(self.phases, probs[b].tolist(), strict=True)),
                calls=dict(zip(self.phases, calls[b].tolist(), strict=True)),
                warning="; ".join(warnings),
                explanation=expl,
            ))
        return out

    # ------------------------------------------------------------------------------ files

    def predict_files(
        self,
        paths: Sequence[str | Path],
        wavelength: float | None = None,
        x_unit: str | None = None,
        poni: str | Path | None = None,
        mask: str | Path = "none",
        workers: int | None = None,
        progress: bool = True,
        *,
        scheduler: Any = None,
        explain: bool = False,
        plot_dir: str | Path | None = None,
        save_integrated: str | Path | None = None,
        expand: bool = True,
    ) -> list[Prediction]:
        """Predict files, folders or globs (1D patterns and 2D frames); one Prediction per pattern.

        Files are read in parallel: ``workers`` processes (default: all cores) over chunks of files,
        or, with ``scheduler`` (``'local'`` for a local Dask cluster, a scheduler address, or a
        ``distributed.Client``), one Dask task per chunk. Every bad file or frame becomes a Prediction
        with ``error`` set; the rest still run. ``poni`` (a pyFAI geometry) and ``mask``
        (``none``/``auto``/a mask file) are for frames; ``plot_dir`` gets one PNG per pattern (and a
        timeline per frame stack), ``save_integrated`` the integrated 1D patterns of frames.
        Results come in input order. As with any process pool, a script that calls this with more
        than one worker needs the ``if __name__ == "__main__":`` guard.
        """
        if expand:
            files, bad = _expand(paths, poni is not None)
        else:
            files, bad = [str(p) for p in paths], []
        job = _Job(
            wavelength=wavelength, x_unit=x_unit, poni=None if poni is None else str(poni),
            mask=str(mask), explain=explain or plot_dir is not None, keep_saliency=explain,
            plot_dir=None if plot_dir is None else str(plot_dir),
            save_integrated=None if save_integrated is None else str(save_integrated),
            names=_file_names(files) if plot_dir is not None or save_integrated is not None else {},
        )
        workers = max(1, workers or _n_cores())
        chunks = _chunks(files, workers)
        results: list[list[Prediction]] = [[] for _ in chunks]
        with _progress(progress and len(files) > 1 and len(chunks) > 1, len(files)) as advance:
            if scheduler is not None:
                self._run_dask(chunks, job, scheduler, workers, results, advance)
            elif workers == 1 or len(chunks) == 1:
                for k, chunk in enumerate(chunks):
                    results[k] = _run_chunk(self, chunk, job)
                    advance(len(chunk))
            else:
                self._run_pool(chunks, job, workers, results, advance)
        preds = [Prediction(label, error=str(err)) for label, err in bad]
        preds += [p for part in results for p in part]
        if plot_dir is not None:
            write_timelines(preds, self.phases, self.thresholds, plot_dir)
        return preds

    def _run_pool(self, chunks: list[list[str]], job: _Job, workers: int,
                  results: list[list[Prediction]], advance: Callable[[int], None]) -> None:
        """Chunks on a process pool; each worker gets the predictor once, at its start."""
        with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=_pool_context(),
                                 initializer=_init_worker, initargs=(self,)) as pool:
            futures: dict[Future, int] = {pool.submit(_worker_chunk, c, job): k for k, c in enumerate(chunks)}
            for fut in as_completed(futures):
                k = futures[fut]
                results[k] = fut.result()
                advance(len(chunks[k]))

    def _run_dask(self, chunks: list[list[str]], job: _Job, scheduler: Any, workers: int,
                  results: list[list[Prediction]], advance: Callable[[int], None]) -> None:
        """One Dask task per chunk on ``scheduler`` (a Client, an address, or ``'local'``)."""
        from distributed import Client, LocalCluster
        from distributed import as_completed as dask_completed

        own: list[Any] = []
        if isinstance(scheduler, Client):
            client = scheduler
        elif scheduler == "local":
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, env={"OMP_NUM_THREADS": "1"})
            client = Client(cluster)
            own = [client, cluster]
        else:
            client = Client(str(scheduler))
            own = [client]
        try:
            shared = client.scatter(self, broadcast=True)
            futures = {client.submit(_run_chunk, shared, c, job, pure=False): k for k, c in enumerate(chunks)}
            for fut in dask_completed(list(futures)):
                k = futures[fut]
                results[k] = fut.result()
                advance(len(chunks[k]))
        finally:
            for obj in own:
                obj.close()


@dataclass(frozen=True)
class _Job:
    """Reading and output options shared by every chunk of one ``predict_files`` call."""

    wavelength: float | None
    x_unit: str | None
    poni: str | None
    mask: str
    explain: bool
    keep_saliency: bool
    plot_dir: str | None
    save_integrated: str | None
    names: dict[str, str]  # input file → distinct base name for its plots and integrated files


_WORKER: dict[str, Predictor] = {}
_PRELOAD = ["xrdmtl.predict", "xrdmtl.models", "xrdmtl.readers"]


def _pool_context() -> multiprocessing.context.BaseContext:
    """Worker processes fork from a clean server process (``forkserver``, which imports the
    prediction modules once), never from this process: a fork of a process that has run OpenMP code
    (torch, pyFAI) can deadlock in its first parallel region. ``spawn`` where there is no forkserver."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def _init_worker(predictor: Predictor) -> None:
    import torch

    torch.set_num_threads(1)
    _WORKER["predictor"] = predictor


def _worker_chunk(chunk: list[str], job: _Job) -> list[Prediction]:
    return _run_chunk(_WORKER["predictor"], chunk, job)


def _run_chunk(predictor: Predictor, chunk: Sequence[str], job: _Job) -> list[Prediction]:
    """Read, predict, plot and save one chunk of files, in order (the unit of parallel work)."""
    integrator = _integrator(job.poni) if job.poni else None
    out: list[Prediction] = []
    batch: list[tuple[str, Pattern | XrdmtlError]] = []

    def flush() -> None:
        preds, inputs = predictor._predict_items(batch, job.explain)
        for (_, item), pred, x in zip(batch, preds, inputs, strict=True):
            if job.plot_dir is not None and x is not None and isinstance(item, Pattern):
                _plot_prediction(predictor, pred, item, x, job)
            if pred.explanation is not None and not job.keep_saliency:
                pred.explanation.saliency = None
        out.extend(preds)
        batch.clear()

    for path in chunk:
        for label, item in _read(path, job, integrator):
            if job.save_integrated and isinstance(item, Pattern) and _is_frame(path, integrator is not None):
                item = _save_integrated(label, item, job)
            batch.append((label, item))
            if len(batch) >= BATCH_SIZE:
                flush()
    if batch:
        flush()
    return out


def _read(path: str, job: _Job, integrator: Any) -> Iterator[tuple[str, Pattern | XrdmtlError]]:
    """(label, pattern or error) for every pattern in ``path``: one for a 1D file, one per frame."""
    from .errors import FrameError

    if _is_frame(path, integrator is not None):
        if integrator is None:
            yield path, FrameError("a 2D detector frame needs its geometry: give --poni FILE", path)
            return
        from .frames import patterns_from_frames

        try:
            yield from patterns_from_frames(path, integrator, _mask_arg(job.mask))
        except XrdmtlError as exc:
            yield path, exc
        except Exception as exc:  # a reader library failing in an unforeseen way: report, go on
            yield path, FrameError(f"cannot read frames: {type(exc).__name__}: {exc}", path)
        return
    from .readers import load_pattern

    try:
        yield path, load_pattern(path, wavelength=job.wavelength, x_unit=job.x_unit)
    except XrdmtlError as exc:
        yield path, exc
    except Exception as exc:  # never let one file stop the batch
        yield path, PatternError(f"cannot read: {type(exc).__name__}: {exc}", path)


def _mask_arg(mask: str) -> Any:
    """The ``mask`` argument for frames: 'none' and 'auto' stay, a file → its bool mask array."""
    if mask in ("none", "auto"):
        return mask
    from .frames import load_mask

    return _cached_mask(mask, load_mask)


_MASKS: dict[str, Any] = {}


def _cached_mask(path: str, loader: Callable[[str], Any]) -> Any:
    if path not in _MASKS:
        _MASKS[path] = loader(path)
    return _MASKS[path]


_INTEGRATORS: dict[str, Any] = {}


def _integrator(poni: str) -> Any:
    """One integrator per geometry file per process, built on first use."""
    if poni not in _INTEGRATORS:
        from .frames import Integrator

        _INTEGRATORS[poni] = Integrator(poni)
    return _INTEGRATORS[poni]


def _is_frame(path: str, have_geometry: bool) -> bool:
    """A 2D frame file: an image format, or (with a geometry) a 2D ``.npy`` that is not 2×N / N×2."""
    suffix = Path(path.partition("::")[0]).suffix.lower()
    if suffix in FRAME_EXTENSIONS:
        return True
    if suffix == ".npy" and have_geometry:
        fmt = np.lib.format
        try:
            with open(path, "rb") as fh:
                version = fmt.read_magic(fh)
                read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                shape = read(fh)[0]
        except (OSError, ValueError):
            return False
        return len(shape) == 2 and min(shape) > 3
    return False


def _expand(paths: Sequence[str | Path], frames_too: bool) -> tuple[list[str], list[tuple[str, XrdmtlError]]]:
    """Files, folders and globs → files (in argument order) and the arguments that matched nothing."""
    from .readers import PATTERN_EXTENSIONS, collect_inputs

    exts = PATTERN_EXTENSIONS | FRAME_EXTENSIONS if frames_too else PATTERN_EXTENSIONS
    files, bad = collect_inputs(list(paths), extensions=exts)
    return [str(f) for f in files], [(label, err) for label, err in bad]


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
    return [files[i:i + size] for i in range(0, len(files), size)]


class _progress:
    """A rich progress bar on stderr over ``total`` items, or a no-op."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.total = total

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self.bar = Progress("predicting", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                            console=Console(stderr=True), transient=True)
        self.bar.start()
        task = self.bar.add_task("predict", total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()


# ---------------------------------------------------------------------------------- outputs


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


def _frame_index(label: str) -> tuple[str, int] | None:
    """(stack, index) of a frame label ``stack.h5::17``, else None."""
    base, sep, index = label.rpartition("::")
    if not sep or not index.isdigit():
        return None
    return base, int(index)


def _plot_prediction(predictor: Predictor, pred: Prediction, pattern: Pattern, x: np.ndarray, job: _Job) -> None:
    """One PNG: the pattern on the model's grid, reference sticks of the phases found, saliency."""
    from .plots import plot_pattern

    name = _output_name(pred.file, job.names)
    cov = x[2] > 0.5
    y = np.where(cov, x[0], np.nan)
    refs = {n: (None if r.reflections is None else sticks_at(r.reflections, pattern.wavelength))
            for n, r in predictor.references.items()}
    q = predictor.grid.values
    qs = q[cov]
    plot_pattern((q, y), pred.found, refs,
                 saliency=pred.explanation.saliency if pred.explanation else None,
                 path=Path(job.plot_dir) / f"{name}.png", title=pred.file,
                 probabilities=pred.probabilities, q_range=(float(qs.min()), float(qs.max())))


def _output_name(label: str, names: dict[str, str]) -> str:
    """Base name of the outputs of ``label``: its file's distinct name, ``_<index>`` for a frame."""
    frame = _frame_index(label)
    base = frame[0] if frame else label
    stem = names.get(base, _UNSAFE.sub("_", Path(base).stem))
    return f"{stem}_{frame[1]:05d}" if frame else stem


def _save_integrated(label: str, pattern: Pattern, job: _Job) -> Pattern | XrdmtlError:
    """Write an integrated frame as a pyFAI-style text file (a JSON line with the wavelength in m,
    then ``2th_deg I`` columns) that :func:`xrdmtl.readers.load_pattern` reads back; the pattern,
    or the error on failure."""
    path = Path(str(job.save_integrated)) / f"{_output_name(label, job.names)}.xy"
    header = [f"== xrdmtl integration of {label} ==",
              *([f'{{"wavelength": {pattern.wavelength * 1e-10:.6e}}}'] if pattern.wavelength else []),
              f"{pattern.unit:>14} {'I':>14}"]
    try:
        buf = io.StringIO()
        np.savetxt(buf, np.column_stack([pattern.x, pattern.y]), fmt="%.7e",
                   header="\n".join(header), comments="# ")
        write_text(path, buf.getvalue())
    except OSError as exc:
        return PatternError(f"cannot save the integrated pattern to {path}: {exc.strerror or exc}", label)
    return pattern


def write_timelines(predictions: Iterable[Prediction], phases: Sequence[str], thresholds: Sequence[float],
                    folder: str | Path) -> list[Path]:
    """A probability-vs-frame plot per frame stack with more than one predicted frame.

    One stack gives ``timeline.png``; several give ``timeline_<stack>.png`` each.
    """
    from .plots import plot_timeline

    stacks: dict[str, list[tuple[int, list[float]]]] = {}
    for p in predictions:
        frame = _frame_index(p.file)
        if frame and p.ok:
            stacks.setdefault(frame[0], []).append((frame[1], [p.probabilities[n] for n in phases]))
    stacks = {k: v for k, v in stacks.items() if len(v) > 1}
    written = []
    for stack, rows in stacks.items():
        name = "timeline.png" if len(stacks) == 1 else f"timeline_{_UNSAFE.sub('_', Path(stack).stem)}.png"
        index = np.array([r[0] for r in rows])
        probs = np.array([r[1] for r in rows])
        written.append(plot_timeline(index, probs, phases, Path(folder) / name,
                                     thresholds=list(thresholds), title=stack))
    return written
