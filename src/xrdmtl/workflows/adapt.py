"""Adapt a model to a user's labeled patterns (what ``xrdmtl finetune`` runs).

1. Read the labeled patterns (predict's reading options) and audit their labels on the physics alone
   (:func:`~xrdmtl.workflows.audit.audit_labels`): a pattern with a label its peaks contradict is
   *flagged*.
2. Optionally fine-tune the network (``NetworkTuning.steps > 0``): its out-of-fold probabilities
   for the labeled patterns come from ``folds`` fine-tunes on the other folds, so the choice below
   compares it honestly with the network as it was.
3. Choose by leave-one-out (:func:`~xrdmtl.training.adapt.fit_adapter`) between the network alone,
   the network recalibrated to the labels and (where the labeled patterns repeat) blends with a vote
   of the most similar labeled patterns, each scored as ``predict`` will decide it with the physics
   check; anything but the network must beat it clearly, and the whole choice is scored once more
   by nested leave-one-out for the figure the user is shown.
4. Write a normal model folder (network weights, ``adapter.safetensors``, ``model.json``) that
   ``predict``, ``evaluate`` and ``audit`` use unchanged, plus ``audit.csv`` and ``adaptation.json``.

:func:`adapt_arrays` is steps 2–3 on arrays (what cross-validation repeats per fold).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..atomic import write_text
from ..errors import ConfigError, LabelsError, XrdmtlError
from ..inference.verify import Verdicts, Verifier, check_grid
from ..io.labels import LabeledPatterns, labeled_on_grid, read_labels
from ..io.read import ReadOptions, checked_options, expand_inputs, read_files, read_path
from ..model.adapter import check_decides
from ..model.files import LoadedModel, default_model_dir, load_model, save_adapted
from ..model.preprocess import model_input
from ..physics.grid import QGrid
from ..physics.pattern import Pattern
from ..training.adapt import (
    AdaptConfig,
    AdaptResult,
    Candidate,
    Check,
    clearly_better,
    fit_adapter,
    margin_for,
    pseudo_labeled,
)
from .audit import AuditTable

ADAPT_VERSION = 2


@dataclass(frozen=True)
class NetworkTuning:
    """Fine-tuning of the network itself before the blend is chosen (``steps = 0``: none).

    Measured on the paper's 29 patterns and on simulated frames, fine-tuning the network did not beat
    the network as trained once the reference vote is there (see ``docs/adapt.md``), so it is off by
    default; on data far from the synthesis it can help, and the leave-one-out choice keeps it only
    where it scores better."""

    steps: int = 0
    layers: str = "heads"
    folds: int = 5
    seed: int = 0
    adapt_lattice: bool = False

    def __post_init__(self) -> None:
        """Check the settings (a ConfigError names the first that cannot work)."""
        if self.layers not in ("heads", "all"):
            raise ConfigError(f"layers must be heads or all, got {self.layers!r}")
        if self.steps < 0 or self.folds < 2:
            raise ConfigError("steps must not be negative, folds at least 2 (NetworkTuning)")


@dataclass
class Adapted:
    """A base or fine-tuned network with its adapter, and how they were chosen."""

    model: LoadedModel
    fit: AdaptResult
    network_tuned: bool
    candidates_base: list[Candidate]
    candidates_tuned: list[Candidate] = field(default_factory=list)
    network_dir: Path | None = None  # fine-tuned weights (a temporary folder's)
    n_pseudo: int = 0  # unlabeled patterns taken as references with their confident calls


class Unlabeled(NamedTuple):
    """Unlabeled patterns of the run on the model's grid (``finetune --unlabeled``), and the
    physics check of them as ``predict`` checks them (None: unchecked)."""

    intensity: np.ndarray  # (N, G)
    coverage: np.ndarray  # (N, G) bool
    verdicts: Verdicts | None = None


def _summary(c: Candidate) -> dict[str, Any]:
    """A candidate's settings and scores (without the per-pattern rows)."""
    rows = ("brier_rows", "exact_rows", "probs")
    return {k: v for k, v in dataclasses.asdict(c).items() if k not in rows}


def _out_of_fold(
    base_path: Path,
    data: LabeledPatterns,
    x: np.ndarray,
    tuning: NetworkTuning,
    work: Path,
) -> np.ndarray:
    from ..training.finetune import finetune

    n = len(data.labels)
    folds = np.array_split(
        np.random.default_rng([tuning.seed, n]).permutation(n), min(tuning.folds, n)
    )
    p = np.zeros(data.labels.shape, np.float64)
    for i, test in enumerate(folds):
        train = np.setdiff1d(np.arange(n), test)
        out = work / f"fold{i}"
        finetune(
            base_path, _subset(data, train), out, steps=tuning.steps, train_layers=tuning.layers,
            seed=tuning.seed + i, progress=False, adapt_lattice=tuning.adapt_lattice,
        )  # fmt: skip
        p[test] = load_model(out, device="cpu").network_proba(x[test])
    return p


def _subset(data: LabeledPatterns, idx: np.ndarray) -> LabeledPatterns:
    return LabeledPatterns(data.intensity[idx], data.coverage[idx], data.labels[idx])


def adapt_arrays(
    model: str | Path | LoadedModel,
    data: LabeledPatterns,
    contradicted: np.ndarray | None = None,
    config: AdaptConfig | None = None,
    tuning: NetworkTuning | None = None,
    work_dir: Path | None = None,
    unlabeled: Unlabeled | None = None,
    verdicts: Verdicts | None = None,
) -> Adapted:
    """Choose and fit the adaptation of ``model`` (a folder, or one already loaded) to labeled
    patterns on its grid.

    ``verdicts``: the physics check of the labeled patterns (:meth:`~xrdmtl.inference.verify.
    Verifier.verdicts`, as ``predict`` checks them): every candidate is then scored as it will
    predict, and the adapter records whether the check decides with it or only reports
    (:func:`~xrdmtl.training.adapt.with_check`). None: scored without the check.

    ``contradicted``: True where the audit contradicts a label, ``(N, T)`` (or ``(N,)``: every
    label of the pattern). With
    ``tuning.steps > 0`` the fine-tuned networks are written under ``work_dir``. ``unlabeled``:
    unlabeled patterns of the same run; those the adapted model calls confidently (decided as
    ``predict`` decides them) join the references (:func:`~xrdmtl.training.adapt.pseudo_labeled`)."""
    base = model if isinstance(model, LoadedModel) else load_model(model, device="cpu")
    base_path = Path(base.path)
    if base.adapter is not None:
        base = dataclasses.replace(base, adapter=None)
    x = model_input(data.intensity, data.coverage, base.grid.step)
    p = base.network_proba(x)
    check = None if verdicts is None else check_of(verdicts)
    fit = fit_adapter(x, data.labels, p, base.thresholds, contradicted, config, check=check)
    adapted = Adapted(dataclasses.replace(base, adapter=fit.adapter), fit, False, fit.candidates)
    if tuning is not None and tuning.steps > 0 and len(data.labels) >= 4:
        if work_dir is None:
            raise ValueError("fine-tuning the network needs a work_dir")
        adapted = _with_tuned_network(
            base_path, data, x, contradicted, config or AdaptConfig(), tuning, work_dir, adapted,
            check,
        )  # fmt: skip
    if unlabeled is not None and len(unlabeled.intensity):
        xu = model_input(unlabeled.intensity, unlabeled.coverage, base.grid.step)
        network = dataclasses.replace(adapted.model, adapter=None)
        checked = None if unlabeled.verdicts is None else check_of(unlabeled.verdicts)
        features, labels, sure = pseudo_labeled(
            adapted.fit.adapter, xu, network.network_proba(xu), network.thresholds, checked
        )
        if sure.any():
            adapter = adapted.fit.adapter.with_references(features, labels)
            adapted.fit = dataclasses.replace(adapted.fit, adapter=adapter)
            adapted.model = dataclasses.replace(adapted.model, adapter=adapter)
            adapted.n_pseudo = int(sure.sum())
    return adapted


def check_of(verdicts: Verdicts) -> Check:
    """The check as :func:`~xrdmtl.training.adapt.fit_adapter` asks for it."""
    return lambda p, rows: verdicts.take(rows).decide(p)


def predicted_proba(model: LoadedModel, x: np.ndarray, verdicts: Verdicts | None) -> np.ndarray:
    """The probabilities ``predict`` gives for model inputs ``x`` whose check is ``verdicts`` (None:
    unchecked): the model's (its adapter's blend included), decided by the check unless the
    adapter records that the check only reports."""
    p = np.asarray(model.predict_proba(x), np.float64)
    if verdicts is None or not check_decides(model.adapter):
        return p
    return verdicts.decide(p)


def _with_tuned_network(
    base_path: Path,
    data: LabeledPatterns,
    x: np.ndarray,
    contradicted: np.ndarray | None,
    config: AdaptConfig,
    tuning: NetworkTuning,
    work_dir: Path,
    adapted: Adapted,
    check: Check | None = None,
) -> Adapted:
    """``adapted``, or the fine-tuned network with its own adapter where that scores clearly better
    out of fold (:func:`~xrdmtl.training.adapt.clearly_better`)."""
    from ..training.finetune import finetune

    oof = _out_of_fold(base_path, data, x, tuning, work_dir)
    thresholds = adapted.model.thresholds
    fit_tuned = fit_adapter(x, data.labels, oof, thresholds, contradicted, config, check=check)
    adapted.candidates_tuned = fit_tuned.candidates
    margin = margin_for(config, adapted.fit.regime.repeats)
    if not clearly_better(fit_tuned.chosen, adapted.fit.chosen, margin):
        return adapted
    out = work_dir / "network"
    finetune(
        base_path, data, out, steps=tuning.steps, train_layers=tuning.layers, seed=tuning.seed,
        progress=False, adapt_lattice=tuning.adapt_lattice,
    )  # fmt: skip
    tuned = load_model(out, device="cpu")
    return Adapted(
        dataclasses.replace(tuned, adapter=fit_tuned.adapter), fit_tuned, True,
        adapted.candidates_base, fit_tuned.candidates, out,
    )  # fmt: skip


@dataclass
class AuditedLabels:
    """Labeled patterns on a model's grid, the files read and skipped, and the physics audit."""

    data: LabeledPatterns
    files: list[str]
    skipped: list[str]
    contradicted: np.ndarray  # (file, phase) bool: a label the audit contradicts
    audit: AuditTable | None
    grid: QGrid  # the model's, which the patterns are on
    verifier: Verifier  # the physics check of the model's phases, as predict's
    verdicts: Verdicts | None = None  # its verdicts on the patterns read

    @property
    def flagged(self) -> np.ndarray:
        """A bool per file: one of its labels is contradicted."""
        return np.asarray(self.contradicted.any(axis=1), bool)

    @property
    def flagged_files(self) -> list[str]:
        return [f for f, bad in zip(self.files, self.flagged, strict=True) if bad]


def read_and_audit(
    labels_csv: str | Path,
    model: str | Path,
    options: ReadOptions | None = None,
    *,
    audit: bool = True,
    note: Callable[[str], None] | None = None,
) -> AuditedLabels:
    """Read the labeled patterns of ``labels_csv`` onto ``model``'s grid and audit their labels on
    the physics alone (model-free, so the verdicts do not depend on the model being adapted).
    :class:`LabelsError` when fewer than two patterns can be read."""
    from .audit import audit_labels

    options = checked_options(options)
    base = load_model(model, device="cpu")
    all_files, labels = read_labels(labels_csv, base.phases, note)
    items = read_files(all_files, options)  # read once, for both
    data, files, skipped = labeled_on_grid(all_files, items, labels, base.grid, labels_csv)
    if len(files) < 2:
        raise LabelsError(
            f"adaptation needs at least 2 readable labeled patterns, got {len(files)}", labels_csv
        )
    table = None
    contradicted = np.zeros(data.labels.shape, bool)
    if audit:
        table = audit_labels(
            labels_csv, None, options, use_model=False, phases=base.phases, note=note, items=items
        )
        row = {f: i for i, f in enumerate(files)}
        for r in table.flagged:
            if r.file in row:  # not a file skipped on the grid
                contradicted[row[r.file], base.phases.index(r.phase)] = True
    verifier = Verifier(base.phases, check_grid(base.grid))
    read = {f: item for f, item in zip(all_files, items, strict=True) if isinstance(item, Pattern)}
    x, calibrated = verifier.inputs([read[f] for f in files])
    verdicts = verifier.verdicts(x, calibrated)
    return AuditedLabels(data, files, skipped, contradicted, table, base.grid, verifier, verdicts)


@dataclass
class AdaptReport:
    """What ``xrdmtl finetune`` did: the model folder, the labels used, the choice and its scores."""

    out: Path
    files: list[str]
    skipped: list[str]
    flagged: list[str]  # files with a label the physics audit contradicts
    left_out: list[str]  # references not voting (flagged, when that scored better)
    labels_left_out: list[str]  # "file: phase" of labels left out of the vote, their file voting
    adapted: Adapted
    seconds: float
    contradicted: list[str] = field(default_factory=list)  # "file: phase" the audit contradicts

    @property
    def chosen(self) -> Candidate:
        return self.adapted.fit.chosen

    def to_dict(self) -> dict[str, Any]:
        def rows(cands: list[Candidate]) -> list[dict[str, Any]]:
            return [_summary(c) for c in cands]

        fit = self.adapted.fit
        estimate = fit.estimate
        keep = fit.keep_would
        return {
            "version": ADAPT_VERSION,
            "model": str(self.out),
            "n_labeled": len(self.files),
            "regime": {**dataclasses.asdict(fit.regime), "description": fit.regime.describe()},
            "estimate": None if estimate is None else dataclasses.asdict(estimate),
            "network_alone": _summary(fit.network),
            "with_contradicted_kept": None if keep is None else _summary(keep),
            "overruled": None if fit.overruled is None else _summary(fit.overruled),
            "overruled_by": None
            if fit.overruled_by is None
            else dataclasses.asdict(fit.overruled_by),
            "skipped": self.skipped,
            "flagged_by_audit": self.flagged,
            "contradicted_labels": self.contradicted,
            "left_out_of_vote": self.left_out,
            "labels_left_out_of_vote": self.labels_left_out,
            "network_fine_tuned": self.adapted.network_tuned,
            "n_pseudo_labeled": self.adapted.n_pseudo,
            "chosen": {**_summary(self.chosen), "description": self.chosen.describe()},
            "leave_one_out_base_network": rows(self.adapted.candidates_base),
            "leave_one_out_tuned_network": rows(self.adapted.candidates_tuned),
            "seconds": round(self.seconds, 1),
        }


def adapt_to_labels(
    labels_csv: str | Path,
    out: str | Path,
    model: str | Path | None = None,
    options: ReadOptions | None = None,
    *,
    config: AdaptConfig | None = None,
    tuning: NetworkTuning | None = None,
    audit: bool = True,
    unlabeled: Sequence[str | Path] = (),
    note: Callable[[str], None] | None = None,
) -> AdaptReport:
    """Adapt ``model`` (default: the shipped one) to the labeled patterns of ``labels_csv`` and
    write the adapted model folder to ``out`` (with ``audit.csv`` and ``adaptation.json``).

    Unreadable files are skipped (listed in the report); :class:`LabelsError` when none can be read.
    ``audit=False`` skips the physics audit (no reference is then flagged). ``unlabeled``: files,
    folders or globs of unlabeled patterns of the same run (read like the labeled ones); those the
    adapted model calls confidently join its references."""
    t0 = time.perf_counter()
    model_path = Path(model) if model is not None else default_model_dir()
    out = Path(out)
    options = checked_options(options)
    labeled = read_and_audit(labels_csv, model_path, options, audit=audit, note=note)
    if labeled.audit is not None:
        labeled.audit.to_csv(out / "audit.csv")
    data, files, skipped = labeled.data, labeled.files, labeled.skipped
    flagged_files = labeled.flagged_files
    extra = None
    if unlabeled:
        extra, failed = _read_unlabeled(unlabeled, files, labeled, options)
        skipped = [*skipped, *failed]
    with tempfile.TemporaryDirectory(prefix="xrdmtl-adapt-") as tmp:
        adapted = adapt_arrays(
            model_path, data, labeled.contradicted, config, tuning, Path(tmp), extra,
            labeled.verdicts,
        )  # fmt: skip
        weights = adapted.network_dir if adapted.network_tuned else model_path
        assert weights is not None
        provenance = {
            "adaptation": {
                "version": ADAPT_VERSION,
                "from": str(model_path),
                "labels": str(labels_csv),
                "files": files,
                "skipped": skipped,
                "flagged_by_audit": flagged_files,
                "network_fine_tuned": adapted.network_tuned,
                "n_unlabeled": 0 if extra is None else len(extra.intensity),
                "n_pseudo_labeled": adapted.n_pseudo,
                "chosen": _summary(adapted.fit.chosen),
                "wavelength": options.wavelength,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        }
        save_adapted(out, weights, adapted.fit.adapter, provenance)
    phases = adapted.model.phases
    report = AdaptReport(
        out, files, skipped, flagged_files, [files[i] for i in adapted.fit.left_out],
        [f"{files[i]}: {phases[j]}" for i, j in adapted.fit.labels_left_out], adapted,
        time.perf_counter() - t0,
        [f"{files[i]}: {phases[j]}" for i, j in np.argwhere(labeled.contradicted)],
    )  # fmt: skip
    write_text(out / "adaptation.json", json.dumps(report.to_dict(), indent=1) + "\n")
    return report


def _read_unlabeled(
    paths: Sequence[str | Path],
    labeled: Sequence[str],
    audited: AuditedLabels,
    options: ReadOptions,
) -> tuple[Unlabeled, list[str]]:
    """Unlabeled patterns on the labeled patterns' grid (the labeled files left out, so a whole
    run's folder can be given), checked as the labeled ones are, and one line per input that could
    not be read."""
    files, missing = expand_inputs(list(paths), frames_too=options.poni is not None)
    known = {str(Path(f).resolve()) for f in labeled}
    files = [f for f in files if str(Path(f).resolve()) not in known]
    failed = [str(e) for _, e in missing]
    patterns, rows = [], []
    for f in files:
        for label, item in read_path(f, options):  # every frame of a stack
            try:
                if isinstance(item, XrdmtlError):
                    raise item
                rows.append(item.on_grid(audited.grid))
                patterns.append(item)
            except XrdmtlError as exc:
                failed.append(str(exc) if label in str(exc) else f"{label}: {exc}")
    if not rows:
        empty = np.zeros((0, audited.grid.n), np.float32)
        return Unlabeled(empty, np.zeros((0, audited.grid.n), bool)), failed
    verdicts = audited.verifier.verdicts(*audited.verifier.inputs(patterns))
    return Unlabeled(
        np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows]), verdicts
    ), failed
