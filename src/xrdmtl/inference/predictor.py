"""Batched prediction: patterns and files in, per-phase probabilities, calls, warnings and evidence out.

:class:`Predictor` wraps a model (the shipped default, a model folder, or a loaded model). For a batch
it resamples every pattern onto the model's Q grid, builds the model input with one
:func:`~xrdmtl.model.preprocess.model_input` call and runs one forward pass, then checks each pattern:

- **coverage** (an *error*, the pattern gets no call): data on less than :data:`MIN_COVERAGE` of the
  model's Q grid, or on none of the strongest reflections of any of the model's phases. A phase whose
  strongest reflections all fall outside the data gets a *warning* (its call rests on weak reflections);
- **unknown phase** (a *warning*): strong, significant peaks of the background-removed pattern that no
  called phase explains (reflections within a lattice tolerance, 3% for bastnaesite, 1% otherwise);
- **out of distribution** (a *warning*): a probability within :data:`UNCERTAIN_MARGIN` of its threshold;
- **no evidence** (a *warning*): a phase called although none of its reflections has a detected peak;
- **unsupported call** (the call is *withheld*, with a warning): at least :data:`GUARD_MIN_UNEXPLAINED`
  strong peaks stay unexplained by the phases called and under :data:`GUARD_MIN_HIT_FRACTION` of the
  phase's reflections have a peak: the network matched a few lines of a mineral it does not know.
  The probability is kept; only the call is withdrawn (``guard=False`` keeps every call).

Each warning is a typed :class:`~xrdmtl.inference.results.Note`, its
:class:`~xrdmtl.inference.results.Flag` naming the check. Each :class:`Prediction` carries an :class:`~xrdmtl.inference.explain.Explanation`: the detected peaks, the
reference reflections each phase matched, and (with ``explain=True``) the saliency over Q.

:meth:`Predictor.predict_files` reads files in parallel (a process pool over chunks of files, or one
Dask task per chunk with ``scheduler``), turns every bad file into a Prediction with ``error`` set and
goes on with the rest; 2D frames go through :func:`xrdmtl.io.frames.patterns_from_frames`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError, PatternError, PhaseError, XrdmtlError
from ..io.read import ReadOptions
from ..model.adapter import check_decides
from ..model.files import NetworkModel, ProbabilisticModel, default_model_dir
from ..model.networks import Network
from ..model.preprocess import model_input
from ..physics.pattern import Pattern
from ..physics.phases import Reflections, lorentz_polarization
from ..physics.sanity import data_notes
from ..physics.units import q_to_tth
from . import scale
from .explain import (
    Explanation,
    ReferenceWindows,
    find_peaks_batch,
    saliency,
    top_regions,
)
from .grains import GrainLines
from .results import Flag, Note, Prediction
from .scale import ScaleCheck
from .verify import Verification, Verifier, calibrated, check_grid

if TYPE_CHECKING:
    from distributed import Client

MIN_COVERAGE = 0.25  # fraction of the model's Q grid a pattern must cover
N_STRONG = 3  # a phase's strongest reflections that coverage is checked against
UNCERTAIN_MARGIN = 0.15  # |p − threshold| below this → "uncertain" warning
UNEXPLAINED_MIN_HEIGHT = 0.2  # of the strongest background-removed peak
UNEXPLAINED_MIN_SNR = 8.0  # noise units
# the guard against calls on coincident lines of unknown minerals (docs/predict.md): patterns of
# minerals no model has seen with a false call 31.7 % -> 26.5 %, fresh held-out frames -0.1 to -0.3
# points; its neighbours (2 and 20 %, 4 and 40 %) measure alike
GUARD_MIN_UNEXPLAINED = 3  # strong peaks no called phase explains
GUARD_MIN_HIT_FRACTION = 0.3  # of the phase's reflections with a detected peak
UNIT_CHECK_MIN_PEAKS = (
    3  # a 2θ only assumed that explains fewer strong peaks than this is checked against Q
)
UNIT_CHECK_MIN_MATCHED = (
    5  # and another unit is named only where it puts this many strong peaks on reflections
)
NON_FINITE = (
    "the model's output is not a number (NaN or inf) for this pattern: a damaged model file, "
    "or intensities it cannot read; no call made"
)
UNIT_CHECK_HEIGHT = 0.1  # strong peaks for that check: of the strongest background-removed peak


ASSUMED_UNIT_HINT = (
    "the file names no x unit, read as 2θ: if x is Q, give --x-unit q_A^-1 or q_nm^-1 "
    "(or d_A for d-spacings)"
)


def _failed(label: str, problem: str) -> Prediction:
    """A Prediction with only an error: ``problem``, naming the pattern."""
    return Prediction(label, error=str(PatternError(problem, label)))


def _scale_note(pred: Prediction, pattern: Pattern) -> str:
    """The "Q scaled by k" line of ``pred`` (see :mod:`xrdmtl.inference.scale`), with the
    wavelength that would fit where the pattern is in 2θ at a known wavelength; or ""."""
    e = pred.explanation
    if e is None or e.q_scale is None:
        return ""
    if pattern.unit != "2th_deg" or pattern.wavelength is None:
        return e.q_scale_note
    return (
        f"{e.q_scale_note} (read at λ = {pattern.wavelength:g} Å; "
        f"λ = {pattern.wavelength / e.q_scale:.4g} Å would fit)"
    )


def _doubtful(pred: Prediction) -> bool:
    """Whether a pattern read in an assumed 2θ answers as a pattern in another unit would: it could not
    be predicted, or no phase is called and peaks stand unexplained (the check costs two more readings,
    so a pattern that answers plainly is not doubted)."""
    if not pred.ok:
        return True
    return not pred.found and pred.explanation is not None and bool(pred.explanation.unexplained)


def _provenance(
    pred: Prediction,
    pattern: Pattern,
    unit_note: str = "",
    scale_note: str = "",
    data_note: str = "",
) -> Prediction:
    """``pred`` with the wavelength, its source and the x unit ``pattern`` was read with; among its
    notes the reader's (x unit, wavelength), ``unit_note`` (a better-fitting x unit),
    ``scale_note`` (peaks that fit only with Q scaled) and ``data_note`` (gaps, sign, saturation,
    step), and a hint where a 2θ that was only assumed may be wrong."""
    meta = pattern.meta
    assumed = bool(meta.get("x_unit_assumed"))
    pred.wavelength = pattern.wavelength
    pred.wavelength_source = meta.get("wavelength_source") or ("poni" if meta.get("poni") else "")
    pred.x_unit = f"{pattern.unit} (assumed)" if assumed else pattern.unit
    first = [  # change how the rest reads
        Note(flag, str(text))
        for flag, text in (
            (Flag.X_UNIT, unit_note),
            (Flag.X_UNIT, meta.get("x_unit_note")),
            (Flag.WAVELENGTH, meta.get("wavelength_note")),
            (Flag.Q_SCALE, scale_note),
            (Flag.DATA, data_note),
        )
        if text
    ]
    last = (
        [Note(Flag.X_UNIT, ASSUMED_UNIT_HINT)] if assumed and not pred.ok and not unit_note else []
    )
    if pred.ok:
        pred.notes = [*first, *pred.notes, *last]
    elif first or last:
        pred.error = f"{pred.error} ({'; '.join(n.text for n in first + last)})"
    return pred


@dataclass
class _Reference:
    """What the predictor knows of one phase's reflections on the model's grid."""

    reflections: Reflections | None
    windows: ReferenceWindows  # where each strong reflection may show up on the grid
    strong: np.ndarray  # grid indices of the strongest reflections inside the grid
    tolerance: float = 0.0  # relative Q the phase's own lattice range (strain) may move it


def _phase_reference(name: str, q_max: float) -> tuple[Reflections, float] | None:
    """Reflections (Q-space intensities) and matching tolerance of a library phase; None if unknown."""
    from ..physics.phases import get_phase

    try:
        phase = get_phase(name)
    except PhaseError:
        return None
    return phase.reflections(None, q_max=q_max), phase.priors.tolerance


def sticks_at(reflections: Reflections, wavelength: float | None) -> Reflections:
    """The reflections with the Lorentz–polarisation factor of ``wavelength`` (Å) applied, if known."""
    if wavelength is None:
        return reflections
    tth = q_to_tth(reflections.q, wavelength)
    ok = np.isfinite(tth)
    inten = np.where(ok, reflections.intensity * lorentz_polarization(np.where(ok, tth, 90.0)), 0.0)
    inten = 100 * inten / inten.max() if inten.max() > 0 else inten
    return Reflections(
        reflections.hkl,
        reflections.d,
        reflections.q,
        tth,
        inten,
        reflections.multiplicity,
        wavelength,
    )


class Predictor:
    """Calls the phases of a model in patterns and files.

    ``model``: None (the shipped default model), a model folder or ``.safetensors`` file, or a
    :class:`~xrdmtl.model.files.LoadedModel`. ``threshold`` overrides every phase's threshold (else the
    model's, default 0.5). ``references`` maps phase names to (reflections, relative Q tolerance)
    (default: the phase library, looked up by name; a phase without one gets no sticks and no
    unknown-peak check). ``guard``: withhold calls the peaks do not support (see the module notes).
    ``verify``: True (the default) refines each phase against the pattern and decides each call
    with the network (:mod:`~xrdmtl.inference.verify`; the probabilities are then the combined ones,
    and each prediction carries its :class:`~xrdmtl.inference.verify.Verification`); False: the
    network alone, as before the check existed.
    """

    def __init__(
        self,
        model: ProbabilisticModel | str | Path | None = None,
        threshold: float | None = None,
        references: dict[str, tuple[Reflections, float] | None] | None = None,
        guard: bool = True,
        verify: bool = True,
    ) -> None:
        from ..model.files import load_model

        if threshold is not None and not 0.0 < threshold < 1.0:
            raise ConfigError(f"threshold must lie between 0 and 1, got {threshold}")
        if model is None:
            model = load_model(default_model_dir())
        elif isinstance(model, (str, Path)):
            model = load_model(model)
        self.model: ProbabilisticModel = model
        self.guard = guard
        self.phases: list[str] = list(model.phases)
        self.grid = model.grid
        meta_thresholds = np.asarray(
            model.meta.get("thresholds", [0.5] * len(self.phases)), dtype=float
        )
        self.thresholds = (
            np.full(len(self.phases), threshold, dtype=float)
            if threshold is not None
            else meta_thresholds
        )
        refs = (
            references
            if references is not None
            else {name: _phase_reference(name, self.grid.q_max) for name in self.phases}
        )
        self.references = {name: self._reference(refs.get(name)) for name in self.phases}
        self.verifier = Verifier(self.phases, check_grid(self.grid)) if verify else None
        self.scale_check = ScaleCheck.build(
            {name: r.reflections for name, r in self.references.items()}, self.grid
        )

    @cached_property
    def grain_lines(self) -> GrainLines:
        """The sample's lines in a frame (:mod:`~xrdmtl.inference.grains`): the spots ``--mask auto``
        spares (built on first use)."""
        return GrainLines(self.verifier or Verifier(self.phases, check_grid(self.grid)))

    @property
    def verify(self) -> bool:
        """Whether every call is checked against the pattern (and the refined cells reported)."""
        return self.verifier is not None

    @property
    def check_decides(self) -> bool:
        """Whether the check decides each call with the model. Not for an adapted model whose
        adaptation found that the user's labels follow a convention the physics does not bear
        out (``Adapter.check``): the check then only reports, with a note where it disagrees."""
        return self.verifier is not None and check_decides(getattr(self.model, "adapter", None))

    def _check_notes(self, p: np.ndarray, checked: np.ndarray) -> list[Note]:
        """Where the check, which only reports, would call a phase otherwise than the model."""
        out = []
        for t in np.flatnonzero((p >= self.thresholds) != (checked >= self.thresholds)):
            name, verb = self.phases[t], "present" if checked[t] >= self.thresholds[t] else "absent"
            out.append(
                Note(
                    Flag.PHYSICS,
                    f"the physics check reads {name} {verb} (its p {checked[t]:.2f}); the adapted "
                    f"model's call (p {p[t]:.2f}) follows your labels",
                    (name,),
                )
            )
        return out

    def sticks(self, wavelength: float | None) -> dict[str, Reflections | None]:
        """Each phase's reference reflections as seen at ``wavelength`` (see :func:`sticks_at`)."""
        return {
            n: None if r.reflections is None else sticks_at(r.reflections, wavelength)
            for n, r in self.references.items()
        }

    def _network(self) -> Network:
        """The model's network, for saliency maps (a ConfigError for a model without one)."""
        if not isinstance(self.model, NetworkModel):
            raise ConfigError(
                f"explain needs a model with a network, not a {type(self.model).__name__}"
            )
        return self.model.net

    def _reference(self, ref: tuple[Reflections, float] | None) -> _Reference:
        if ref is None:
            empty = np.zeros(0, dtype=int)
            return _Reference(None, ReferenceWindows(np.zeros(0), empty, empty), empty)
        refl, tol = ref
        inside = (refl.q >= self.grid.q_min) & (refl.q <= self.grid.q_max)
        order = np.flatnonzero(inside)[np.argsort(-refl.intensity[inside], kind="stable")][
            :N_STRONG
        ]
        strong = np.clip(np.round(self.grid.index(refl.q[order])).astype(int), 0, self.grid.n - 1)
        return _Reference(refl, ReferenceWindows.build(refl, self.grid, tol), strong, tol)

    # ------------------------------------------------------------------------------ patterns

    def predict_patterns(
        self,
        patterns: Sequence[Pattern],
        explain: bool = False,
        labels: Sequence[str] | None = None,
    ) -> list[Prediction]:
        """Predict a batch of patterns: one model-input call and one forward pass for the batch.

        ``labels`` name the patterns in the results (default: each pattern's ``source``);
        ``explain`` adds the saliency maps (one backward pass per phase for the batch).
        """
        names = list(labels) if labels is not None else [p.source for p in patterns]
        return self.predict_items(list(zip(names, patterns, strict=True)), explain)[0]

    def predict_items(
        self, items: Sequence[tuple[str, Pattern | XrdmtlError]], explain: bool
    ) -> tuple[list[Prediction], list[np.ndarray | None]]:
        """Predictions for (label, pattern or error) items, and each one's model input (None if failed):
        what :mod:`~xrdmtl.inference.parallel` runs per batch of files read."""
        results: list[Prediction | None] = [None] * len(items)
        inputs: list[np.ndarray | None] = [None] * len(items)
        good: list[int] = []
        grids: list[tuple[np.ndarray, np.ndarray]] = []
        data_note: dict[int, str] = {}  # the data's own sanity notes (physics.sanity)
        for i, (label, item) in enumerate(items):
            if isinstance(item, XrdmtlError):
                results[i] = Prediction(label, error=str(item))
                continue
            try:
                intensity, coverage = item.on_grid(self.grid)
            except XrdmtlError as exc:
                results[i] = Prediction(label, error=str(exc))
                continue
            data_note[i] = "; ".join(data_notes(item, self.grid))
            problem = self._coverage_problem(coverage)
            if problem:
                results[i] = _failed(label, problem)
                continue
            good.append(i)
            grids.append((intensity, coverage))
        if good:
            intensity = np.stack([g[0] for g in grids])
            coverage = np.stack([g[1] for g in grids])
            x = model_input(intensity, coverage, self.grid.step)
            probs = np.asarray(self.model.predict_proba(x), dtype=float)
            finite = np.isfinite(probs).all(axis=1)  # NaN/inf: a damaged model or input, no answer
            probs = np.where(finite[:, None], probs, 0.0)
            checks = self._check(
                [p for i in good if isinstance(p := items[i][1], Pattern)], x, probs
            )
            sal = saliency(self._network(), x) if explain else None
            final = checks[0] if checks and self.check_decides else probs
            done = self._finish([items[i][0] for i in good], x, final, coverage, sal)
            for k, (i, pred) in enumerate(zip(good, done, strict=True)):
                pred.verification = checks[1][k] if checks else None
                if checks and not self.check_decides:
                    pred.notes += self._check_notes(probs[k], checks[0][k])
                results[i] = pred if finite[k] else _failed(pred.file, NON_FINITE)
                inputs[i] = x[k] if finite[k] else None
        for i, ((_, item), result) in enumerate(zip(items, results, strict=True)):
            if result is not None and isinstance(item, Pattern):
                doubt = item.meta.get("x_unit_assumed") and _doubtful(result)
                unit_note = self._other_unit(item) if doubt else ""
                notes = (unit_note, _scale_note(result, item), data_note.get(i, ""))
                _provenance(result, item, *notes)
        return [r for r in results if r is not None], inputs

    def _check(
        self, patterns: Sequence[Pattern], x: np.ndarray, probs: np.ndarray
    ) -> tuple[np.ndarray, list[Verification]] | None:
        """The physics check of a batch (None without one), on the check's grid (the model's
        inputs ``x`` where it is the same grid)."""
        if self.verifier is None:
            return None
        if self.verifier.grid == self.grid:
            return self.verifier.check(x, probs, calibrated(patterns))
        wide, known = self.verifier.inputs(patterns)
        return self.verifier.check(wide, probs, known)

    def _strong_explained(self, pattern: Pattern) -> tuple[int, int] | None:
        """(strong peaks on a reflection of any of the model's phases, strong peaks) of ``pattern``
        on the model's grid; None where it covers too little of the grid to tell."""
        try:
            intensity, coverage = pattern.on_grid(self.grid)
        except XrdmtlError:
            return None
        if coverage.mean() < MIN_COVERAGE:
            return None
        x = model_input(intensity[None], coverage[None], self.grid.step)
        _, idx, height, snr = find_peaks_batch(x, self.grid)
        strong = idx[(height >= UNIT_CHECK_HEIGHT) & (snr >= UNEXPLAINED_MIN_SNR)]
        windows = np.stack([r.windows.mask(self.grid.n) for r in self.references.values()])
        return int(windows[:, strong].any(axis=0).sum()), int(strong.size)

    def _other_unit(self, pattern: Pattern) -> str:
        """For a pattern whose 2θ was only assumed: a note naming the x unit (Q in Å⁻¹ or nm⁻¹) under
        which clearly more of its strong peaks sit on the model's reflections (nearly all, and at
        least two more than as 2θ), or ""."""
        here = self._strong_explained(pattern)
        done = here[0] if here else 0
        if done >= UNIT_CHECK_MIN_PEAKS:  # as 2θ it is already well explained: nothing to doubt
            return ""
        for unit in ("q_A^-1", "q_nm^-1"):
            try:
                other = self._strong_explained(
                    Pattern(pattern.x, pattern.y, unit, pattern.wavelength, pattern.source)
                )
            except XrdmtlError:
                continue
            if (
                other
                and other[0] >= UNIT_CHECK_MIN_MATCHED
                and other[0] >= 0.9 * other[1]
                and other[0] >= done + 2
            ):
                return (
                    f"x looks like {unit}, not 2θ: read as {unit}, {other[0]} of its {other[1]} strong peaks "
                    f"sit on reflections of the model's phases (as 2θ: {done}); give --x-unit {unit} if that "
                    "is its unit"
                )
        return ""

    def _coverage_problem(self, coverage: np.ndarray) -> str:
        """Why a pattern with this grid coverage cannot be called ("" if it can)."""
        frac = float(coverage.mean())
        g = self.grid
        if frac < MIN_COVERAGE:
            return (
                f"covers only {frac:.0%} of the model's Q range {g.q_min:.2f}–{g.q_max:.2f} Å⁻¹ "
                f"(need at least {MIN_COVERAGE:.0%})"
            )
        known = [r for r in self.references.values() if r.strong.size]
        if known and not any(coverage[r.strong].any() for r in known):
            q = g.values[coverage]
            return (
                f"has data only at Q {q.min():.2f}–{q.max():.2f} Å⁻¹, where none of "
                f"{', '.join(self.phases)} has a strong reflection"
            )
        return ""

    def _finish(
        self,
        names: Sequence[str],
        x: np.ndarray,
        probs: np.ndarray,
        coverage: np.ndarray,
        sal: np.ndarray | None,
    ) -> list[Prediction]:
        """Calls, warnings and explanations for a batch of model inputs and their probabilities."""
        q = self.grid.values
        refs = list(self.references.values())
        calls = (probs >= self.thresholds[None, :]).astype(np.uint8)
        rows, idx, height, snr = find_peaks_batch(x, self.grid)
        explains = np.stack([r.windows.mask(self.grid.n) for r in refs])  # (T, G)
        known = np.array([r.reflections is not None for r in refs])
        strong_peak = (height >= UNEXPLAINED_MIN_HEIGHT) & (snr >= UNEXPLAINED_MIN_SNR)
        count = np.zeros((len(names), self.grid.n + 1), dtype=np.int32)
        np.add.at(count, (rows, idx + 1), 1)
        count = np.cumsum(count, axis=1)
        hits = [r.windows.hits(count) for r in refs]  # per phase (B, R)
        in_window = explains[:, idx].T  # (peaks, T): which phases could explain each peak

        def unexplained_by(called: np.ndarray) -> np.ndarray:
            """Strong peaks (bool per detected peak) that no phase of ``called`` explains."""
            return np.asarray(strong_peak & ~(called[rows].astype(bool) & in_window).any(axis=1))

        lonely = unexplained_by(calls)
        withheld = np.zeros_like(calls, dtype=bool)
        if self.guard:
            hit_fraction = np.stack(
                [
                    h.sum(axis=1) / max(int(r.windows.on_grid.sum()), 1)
                    for h, r in zip(hits, refs, strict=True)
                ],
                axis=1,
            )
            withheld = (
                calls.astype(bool)
                & known[None, :]
                & (
                    np.bincount(rows[lonely], minlength=len(names))[:, None]
                    >= GUARD_MIN_UNEXPLAINED
                )
                & (hit_fraction < GUARD_MIN_HIT_FRACTION)
            )
        if withheld.any():  # the peaks a withdrawn call explained are unexplained now
            calls = calls & ~withheld
            lonely = unexplained_by(calls)
        no_data = np.stack(
            [
                ~coverage[:, r.strong].any(axis=1) if r.strong.size else np.zeros(len(names), bool)
                for r in refs
            ],
            axis=1,
        )
        # a call with no detected peak at any of the phase's reflections rests on nothing one can check
        peakless = (
            calls.astype(bool) & known[None, :] & ~np.stack([h.any(axis=1) for h in hits], axis=1)
        )
        scales = self._q_scales(rows, idx, strong_peak, count, coverage)
        uncertain = np.abs(probs - self.thresholds[None, :]) < UNCERTAIN_MARGIN
        unchecked = (calls.astype(bool) & ~known[None, :]).any(axis=1)
        split = np.searchsorted(rows, np.arange(len(names) + 1))
        out = []
        for b, name in enumerate(names):
            sl = slice(split[b], split[b + 1])
            peak_q = q[idx[sl]]
            notes = self._phase_notes(probs[b], no_data[b], withheld[b], peakless[b], uncertain[b])
            unexplained = [] if unchecked[b] else peak_q[lonely[sl]].tolist()
            if unexplained:
                shown = ", ".join(f"{v:.2f}" for v in unexplained[:6])
                more = f" and {len(unexplained) - 6} more" if len(unexplained) > 6 else ""
                notes.append(
                    Note(
                        Flag.UNEXPLAINED_PEAKS,
                        f"unexplained peaks at Q={shown}{more} Å⁻¹ "
                        "(not from the phases called: an unknown phase?)",
                    )
                )
            expl = Explanation(
                peaks=list(zip(peak_q.tolist(), height[sl].tolist(), strict=True)),
                matched={
                    n: r.windows.q[h[b]].tolist()
                    for (n, r), h in zip(self.references.items(), hits, strict=True)
                    if r.reflections is not None
                },
                unexplained=unexplained,
                q_scale=scales[b][0] if b in scales else None,
                q_scale_note=scales[b][1] if b in scales else "",
            )
            if sal is not None:
                expl.saliency = {n: sal[b, t] for t, n in enumerate(self.phases)}
                expl.regions = {n: top_regions(sal[b, t], q) for t, n in enumerate(self.phases)}
            out.append(
                Prediction(
                    name,
                    probabilities=dict(zip(self.phases, probs[b].tolist(), strict=True)),
                    calls=dict(zip(self.phases, calls[b].tolist(), strict=True)),
                    notes=notes,
                    explanation=expl,
                )
            )
        return out

    def _phase_notes(
        self,
        probs: np.ndarray,
        no_data: np.ndarray,
        withheld: np.ndarray,
        peakless: np.ndarray,
        uncertain: np.ndarray,
    ) -> list[Note]:
        """The notes on one pattern's phases (each argument a value or bool per phase): no data
        where its strongest reflections lie, a withheld call, a call without a peak, p near the
        threshold."""
        q, refs = self.grid.values, list(self.references.values())
        notes = [
            Note(
                Flag.NO_DATA,
                f"no data where {self.phases[t]}'s strongest reflections lie "
                f"(Q {q[refs[t].strong].min():.2f}–{q[refs[t].strong].max():.2f} Å⁻¹)",
                (self.phases[t],),
            )
            for t in np.flatnonzero(no_data)
        ]
        if withheld.any():
            notes.append(
                self._phase_note(
                    Flag.WITHHELD,
                    "withheld (few of its reflections have a peak, strong peaks unexplained: "
                    "an unknown phase?): ",
                    withheld,
                    probs,
                )
            )
        if peakless.any():
            notes.append(
                self._phase_note(
                    Flag.NO_EVIDENCE,
                    "called without a peak at any of its reflections: ",
                    peakless,
                )
            )
        if uncertain.any():
            notes.append(
                self._phase_note(
                    Flag.UNCERTAIN, "uncertain (p near the threshold): ", uncertain, probs
                )
            )
        return notes

    def _phase_note(
        self, flag: Flag, text: str, which: np.ndarray, probs: np.ndarray | None = None
    ) -> Note:
        """A note on the phases where ``which`` is set: ``text`` then each phase (with its p)."""
        phases = tuple(self.phases[t] for t in np.flatnonzero(which))
        shown = [
            name if probs is None else f"{name} p={probs[self.phases.index(name)]:.2f}"
            for name in phases
        ]
        return Note(flag, text + ", ".join(shown), phases)

    def _q_scales(
        self,
        rows: np.ndarray,
        idx: np.ndarray,
        strong: np.ndarray,
        count: np.ndarray,
        coverage: np.ndarray,
    ) -> dict[int, tuple[float, str]]:
        """Per pattern of the batch whose strong peaks fit the phases only with Q scaled by k
        (see :mod:`xrdmtl.inference.scale`): k and the line that says so."""
        n_rows = count.shape[0]
        n_strong = np.bincount(rows[strong], minlength=n_rows)
        all_q = self.grid.values[idx]
        n_read = np.bincount(rows[strong & self.scale_check.fits(all_q)], minlength=n_rows)
        gated = np.flatnonzero((n_strong >= scale.MIN_PEAKS) & (n_read < scale.MIN_FIT * n_strong))
        if not gated.size:
            return {}
        sel = strong & np.isin(rows, gated)
        local = np.searchsorted(gated, rows[sel])  # row of each selected peak among the gated
        peak_q = all_q[sel]
        best, at_best, at_one = self.scale_check.scales(
            peak_q, local, count[gated], coverage[gated]
        )
        out = {}
        for r in np.flatnonzero(np.isfinite(best)):
            k, b = float(best[r]), int(gated[r])
            names = self.scale_check.phases_at(peak_q[local == r], k, count[b], coverage[b])
            if abs(k - 1.0) <= max((self.references[n].tolerance for n in names), default=0.0):
                continue  # within the phases' own lattice range: their strain, not λ or distance
            out[b] = (
                k,
                f"the strong peaks fit {', '.join(names)} with Q scaled by k = {k:.3f} "
                f"({at_best[r]} of {n_strong[b]}; as read {at_one[r]}): check the wavelength "
                "or the detector distance",
            )
        return out

    # ------------------------------------------------------------------------------ files

    def predict_files(
        self,
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
        """Predict files, folders or globs (1D patterns and 2D frames); one Prediction per pattern.

        Files are read in parallel: ``workers`` processes (default: all cores) over chunks of files,
        or, with ``scheduler`` (``'local'`` for a local Dask cluster, a scheduler address, or a
        ``distributed.Client``), one Dask task per chunk. Every bad file or frame becomes a Prediction
        with ``error`` set; the rest still run. ``options`` (:class:`~xrdmtl.io.read.ReadOptions`)
        say how files are read: a wavelength and x unit for 1D files, a pyFAI geometry and a mask
        (``none``/``auto``/a mask file) for frames. ``plot_dir`` gets one PNG per pattern (and a
        timeline per frame stack), ``save_integrated`` the integrated 1D patterns of frames,
        ``save_mask`` the automatic masks (``mask='auto'``) as EDF images. Neither overwrites a file.
        Results come in input order. As with any process pool, a script that calls this with more
        than one worker needs the ``if __name__ == "__main__":`` guard.
        """
        from .parallel import predict_files

        return predict_files(
            self,
            paths,
            options,
            workers,
            progress,
            scheduler=scheduler,
            explain=explain,
            plot_dir=plot_dir,
            save_integrated=save_integrated,
            save_mask=save_mask,
            expand=expand,
        )
