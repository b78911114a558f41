"""Label audit: the evidence for and against each label of each labeled pattern.

For every pattern of a labels CSV and every phase: the label, the model's probability (when a model is
available), the model-free peak-match evidence of :mod:`xrdmtl.physics.peaks`, and a verdict:

- ``agrees``: the evidence supports the label;
- ``contradicted``: labeled present with no peak evidence (and no model call for it), or labeled
  absent with strong peak evidence (that the model, if any, shares);
- ``uncertain``: weak or conflicting evidence.

Peak evidence is *strong* when the match score reaches :data:`~xrdmtl.physics.peaks.THRESHOLD` and the best
matched peak stands out (:data:`STRONG_Z` noise units), *none* when the score is below :data:`NO_EVIDENCE`.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ..atomic import write_text
from ..errors import LabelsError, ModelError, XrdmtlError
from ..io.read import ReadOptions, checked_options, read_files
from ..physics.pattern import Pattern
from ..physics.peaks import THRESHOLD, Z_FULL, Peaks, PhaseEvidence, find_pattern_peaks, match_all
from ..physics.phases import Phase, get_phase

if TYPE_CHECKING:
    from ..inference.results import Prediction
    from ..model.files import ProbabilisticModel

NO_EVIDENCE = 0.2  # peak-match score below which a phase has no peak evidence
STRONG_Z = 10.0  # strong evidence needs a matched peak this many noise units high
LINEAR_Z = 3 * Z_FULL  # plots: linear y axis up to here (noise units), logarithmic above
VERDICTS = ("agrees", "uncertain", "contradicted")
CSV_COLUMNS = (
    "file",
    "phase",
    "label",
    "p_model",
    "score",
    "lattice_scale",
    "n_matched",
    "n_considered",
    "max_z",
    "physics_call",
    "model_call",
    "verdict",
    "reason",
)


@dataclass(frozen=True)
class LabelAudit:
    """One label of one pattern, the evidence about it and the verdict."""

    file: str
    phase: str
    label: int
    probability: float | None  # the model's P(present); None without a model
    model_call: int | None  # the model's 0/1 call at its threshold; None without a model
    evidence: PhaseEvidence
    verdict: str  # one of VERDICTS
    reason: str

    @property
    def physics_call(self) -> int:
        """The peak matcher's call at the fixed threshold."""
        return int(self.evidence.present())

    def row(self) -> list[str]:
        """The CSV row (see :data:`CSV_COLUMNS`)."""
        ev = self.evidence
        return [
            self.file,
            self.phase,
            str(self.label),
            "" if self.probability is None else f"{self.probability:.4f}",
            f"{ev.score:.3f}",
            f"{ev.lattice_scale:.4f}",
            str(len(ev.matched)),
            str(ev.n_considered),
            f"{ev.max_z:.1f}",
            str(self.physics_call),
            "" if self.model_call is None else str(self.model_call),
            self.verdict,
            self.reason,
        ]


@dataclass
class AuditTable:
    """The audit of one labels CSV: one :class:`LabelAudit` per (pattern, phase), plus failures."""

    labels_csv: str
    phases: list[str]
    rows: list[LabelAudit]
    errors: dict[str, str] = field(default_factory=dict)  # file → why it could not be audited
    model: str | None = None  # the model used, None for peak evidence only
    plots: dict[str, str] = field(default_factory=dict)  # flagged file → its plot

    @property
    def flagged(self) -> list[LabelAudit]:
        """Labels the evidence contradicts."""
        return [r for r in self.rows if r.verdict == "contradicted"]

    @property
    def disagreements(self) -> list[LabelAudit]:
        """Every label that the peak matcher's or the model's call differs from, or that is not agreed."""
        return [
            r
            for r in self.rows
            if r.verdict != "agrees"
            or r.physics_call != r.label
            or r.model_call not in (None, r.label)
        ]

    def accuracy(self) -> dict[str, dict[str, float]]:
        """Against the labels as given: per-phase accuracy and exact match (all phases right) of the
        peak matcher's calls (``physics``) and, with a model, of the model's calls (``model``)."""
        out: dict[str, dict[str, float]] = {}
        files = sorted({r.file for r in self.rows})
        if not files:  # no labeled pattern could be read: nothing to score (not NaN)
            return out
        sources: dict[str, Callable[[LabelAudit], int | None]] = {
            "physics": lambda r: r.physics_call
        }
        if self.model is not None:
            sources["model"] = lambda r: r.model_call
        for name, call in sources.items():
            right = {(r.file, r.phase): call(r) == r.label for r in self.rows}
            acc = {p: float(np.mean([right[(f, p)] for f in files])) for p in self.phases}
            acc["exact_match"] = float(
                np.mean([all(right[(f, p)] for p in self.phases) for f in files])
            )
            out[name] = acc
        return out

    def to_csv(self, path: str | Path | None = None) -> str:
        """The audit as CSV text (failed files get verdict ``error``); written atomically to ``path``."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows(r.row() for r in self.rows)
        for file, err in self.errors.items():
            writer.writerow([file, *[""] * (len(CSV_COLUMNS) - 3), "error", err])
        text = buf.getvalue()
        if path is not None:
            write_text(path, text, newline="")
        return text

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready document: summary, accuracy, every row with its matched/missing reflections."""

        def refl(ms: Sequence[Any]) -> list[dict[str, Any]]:
            return [
                {
                    "hkl": list(m.hkl),
                    "intensity": round(m.intensity, 1),
                    "expected_q": round(m.expected_q, 4),
                    "found_q": None if np.isnan(m.found_q) else round(m.found_q, 4),
                    "z": round(m.z, 1),
                }
                for m in ms
            ]

        return {
            "labels": self.labels_csv,
            "model": self.model,
            "phases": self.phases,
            "accuracy": self.accuracy(),
            "flagged": [
                {"file": r.file, "phase": r.phase, "label": r.label, "reason": r.reason}
                for r in self.flagged
            ],
            "plots": self.plots,
            "errors": self.errors,
            "rows": [
                {
                    "file": r.file,
                    "phase": r.phase,
                    "label": r.label,
                    "probability": r.probability,
                    "model_call": r.model_call,
                    "physics_call": r.physics_call,
                    "verdict": r.verdict,
                    "reason": r.reason,
                    "score": round(r.evidence.score, 4),
                    "lattice_scale": round(r.evidence.lattice_scale, 4),
                    "max_z": round(r.evidence.max_z, 1),
                    "matched": refl(r.evidence.matched),
                    "missing": refl(r.evidence.missing),
                }
                for r in self.rows
            ],
        }

    def to_markdown(self, link_root: str | Path | None = None) -> str:
        """The audit as markdown: a table (label / model p / peak score per phase, verdict marks),
        accuracy against the labels, and every disagreement with its evidence. Plot links are made
        relative to ``link_root`` (the folder of the markdown file) when given."""
        mark = {"agrees": "", "uncertain": " ?", "contradicted": " **✗**"}
        head = "| file | " + " | ".join(self.phases) + " |"
        lines = [head, "|---|" + "---|" * len(self.phases)]
        for file, cells in self._by_file().items():
            lines.append(
                f"| {_short(file)} | "
                + " | ".join(
                    f"{c.label} / {'-' if c.probability is None else f'{c.probability:.2f}'} / "
                    f"{c.evidence.score:.2f}{mark[c.verdict]}"
                    for c in (cells[p] for p in self.phases)
                )
                + " |"
            )
        lines += [
            f"| {_short(f)} | " + " | ".join(["error"] * len(self.phases)) + " |"
            for f in self.errors
        ]
        lines += [
            "",
            "Cells: label / model probability / peak-match score; ✗ contradicted, ? uncertain.",
            "",
        ]
        for source, acc in self.accuracy().items():
            lines.append(
                f"- {source} calls against the labels as given: exact match {acc['exact_match']:.1%} ("
                + ", ".join(f"{p} {acc[p]:.1%}" for p in self.phases)
                + ")"
            )
        lines += ["", "| file | phase | label | verdict | evidence |", "|---|---|---|---|---|"]
        for r in self.disagreements:
            plot = self.plots.get(r.file) if r.verdict == "contradicted" else None
            if plot and link_root is not None:
                plot = os.path.relpath(plot, link_root)
            link = f" ([plot]({plot}))" if plot else ""
            lines.append(
                f"| {_short(r.file)} | {r.phase} | {r.label} | {r.verdict}{link} | {r.reason} |"
            )
        return "\n".join(lines) + "\n"

    def _by_file(self) -> dict[str, dict[str, LabelAudit]]:
        by_file: dict[str, dict[str, LabelAudit]] = {}
        for r in self.rows:
            by_file.setdefault(r.file, {})[r.phase] = r
        return by_file

    def rich_table(self) -> Any:
        """A rich ``Table``: one line per pattern, each phase as label / p / score / verdict."""
        from rich.table import Table

        style = {"agrees": "green", "uncertain": "yellow", "contradicted": "bold red"}
        table = Table(
            title=f"label audit: {self.labels_csv}"
            + ("" if self.model else " (peak evidence only)")
        )
        table.add_column(
            "file", no_wrap=True, overflow="ellipsis", max_width=26
        )  # one line per file
        for p in self.phases:
            table.add_column(f"{p}\nlabel p score", justify="right", no_wrap=True)
        for file, cells in self._by_file().items():
            table.add_row(
                _short(file),
                *(
                    f"[{style[c.verdict]}]{c.label} "
                    f"{'-' if c.probability is None else f'{c.probability:.2f}'} {c.evidence.score:.2f}[/]"
                    for c in (cells[p] for p in self.phases)
                ),
            )
        for file in self.errors:
            table.add_row(_short(file), *(["[red]error[/red]"] * len(self.phases)))
        return table


def _short(file: str, width: int = 26) -> str:
    """The file's folder and name, its end kept where that is too long for one table line."""
    short = "/".join(Path(file).parts[-2:])
    return short if len(short) <= width else "…" + short[len(short) - width + 1 :]


def verdict(label: int, evidence: PhaseEvidence, model_call: int | None) -> tuple[str, str]:
    """The verdict on one label from the peak evidence and the model's call (None without a model)."""
    strong = evidence.score >= THRESHOLD and evidence.max_z >= STRONG_Z
    none = evidence.score < NO_EVIDENCE
    said = "" if model_call is None else f"; model says {'present' if model_call else 'absent'}"
    if label:
        if strong or (not none and model_call == 1):
            return "agrees", f"labeled present; peak evidence {evidence.summary()}{said}"
        if none and model_call != 1:
            return (
                "contradicted",
                f"labeled present but no peak evidence: {evidence.summary()}{said}",
            )
        return (
            "uncertain",
            f"labeled present; weak or conflicting evidence: {evidence.summary()}{said}",
        )
    if strong and model_call != 0:
        return "contradicted", f"labeled absent but its peaks are there: {evidence.summary()}{said}"
    if (none and model_call != 1) or (not strong and model_call == 0):
        return "agrees", f"labeled absent; peak evidence {evidence.summary()}{said}"
    return "uncertain", f"labeled absent; some peak evidence: {evidence.summary()}{said}"


def audit_labels(
    labels_csv: str | Path,
    model: PatternPredictor | ProbabilisticModel | str | Path | None = None,
    options: ReadOptions | None = None,
    *,
    use_model: bool = True,
    phases: Sequence[str] | None = None,
    plot_dir: str | Path | None = None,
    note: Callable[[str], None] | None = None,
    items: Sequence[Pattern | XrdmtlError] | None = None,
) -> AuditTable:
    """Audit the labels of ``labels_csv`` (``file,<phase>,…``, files relative to the CSV's folder).

    ``model``: a model folder / ``.safetensors`` file, a :class:`~xrdmtl.model.files.LoadedModel` or a
    :class:`~xrdmtl.inference.predictor.Predictor` (anything with ``phases`` and ``predict_patterns``); None takes the shipped default model, and when that does not
    exist (or ``use_model`` is False) the audit rests on peak evidence alone. ``phases``: the phases
    to audit (default: the model's, else every label column), each a library phase. ``options``: how
    the files are read, as in ``predict`` (:class:`~xrdmtl.io.read.ReadOptions`).
    ``plot_dir``: one PNG per pattern with a contradicted label. ``note`` receives one-line notes.
    ``items``: the CSV's files already read, in its order (default: read them here).
    Unreadable patterns are listed in ``errors``; a bad labels file raises :class:`LabelsError`.
    """
    from ..io.labels import read_labels

    options = checked_options(options)
    note = note or (lambda _msg: None)
    predictor = _predictor(model, use_model, note)
    names = (
        list(phases)
        if phases is not None
        else list(predictor.phases)
        if predictor
        else _label_columns(labels_csv)
    )
    if predictor is not None:
        unknown = [p for p in names if p not in predictor.phases]
        if unknown:
            raise LabelsError(f"the model does not know phase(s) {', '.join(unknown)}", labels_csv)
    phase_objs = [_phase(p, labels_csv) for p in names]
    files, labels = read_labels(labels_csv, names, note=note)

    table = AuditTable(
        str(labels_csv), names, [], model=None if predictor is None else _model_name(predictor)
    )
    patterns: list[tuple[int, str, Pattern]] = []
    if items is None:
        items = read_files(files, options)
    for i, (file, item) in enumerate(zip(files, items, strict=True)):
        if isinstance(item, XrdmtlError):
            table.errors[file] = str(item)
        else:
            patterns.append((i, file, item))
    probs: dict[str, tuple[dict[str, float], dict[str, int]]] = {}
    if predictor is not None and patterns:
        for pred in predictor.predict_patterns(
            [p for _, _, p in patterns], labels=[f for _, f, _ in patterns]
        ):
            if pred.error:
                table.errors[pred.file] = pred.error
            else:
                probs[pred.file] = (pred.probabilities, pred.calls)
    for i, file, pattern in patterns:
        if file in table.errors:
            continue
        try:
            peaks = find_pattern_peaks(pattern)
        except XrdmtlError as exc:
            table.errors[file] = str(exc)
            continue
        evidence = match_all(peaks, phase_objs, pattern.wavelength)
        flagged = []
        for j, name in enumerate(names):
            p, call = (
                (probs[file][0][name], int(probs[file][1][name])) if file in probs else (None, None)
            )
            v, why = verdict(int(labels[i, j]), evidence[name], call)
            table.rows.append(
                LabelAudit(file, name, int(labels[i, j]), p, call, evidence[name], v, why)
            )
            flagged += [name] if v == "contradicted" else []
        if flagged and plot_dir is not None:
            path = Path(plot_dir) / _plot_name(file, Path(labels_csv).parent)
            table.plots[file] = str(
                plot_audit(pattern, peaks, evidence, labels[i], names, flagged, path)
            )
    return table


@runtime_checkable
class PatternPredictor(Protocol):
    """What the audit asks of a model: its phases and probabilities for labeled patterns (a
    :class:`~xrdmtl.inference.predictor.Predictor`, or a stand-in)."""

    @property
    def phases(self) -> Sequence[str]: ...

    def predict_patterns(
        self, patterns: Sequence[Pattern], *, labels: Sequence[str]
    ) -> list[Prediction]: ...


def _predictor(
    model: PatternPredictor | ProbabilisticModel | str | Path | None,
    use_model: bool,
    note: Callable[[str], None],
) -> PatternPredictor | None:
    """A Predictor for ``model`` (the network alone: the audit weighs the peaks itself), or None
    (peak evidence only) when asked or no default model exists."""
    from ..inference.predictor import Predictor

    if not use_model:
        return None
    if isinstance(model, PatternPredictor):
        return model
    if model is None:
        try:
            return Predictor(verify=False)
        except ModelError as exc:
            note(f"no default model ({exc.reason}): auditing with peak evidence only")
            return None
    return Predictor(model, verify=False)


def _model_name(predictor: PatternPredictor) -> str:
    """The model folder behind ``predictor``, else its type's name."""
    from ..inference.predictor import Predictor
    from ..model.files import LoadedModel

    if isinstance(predictor, Predictor) and isinstance(predictor.model, LoadedModel):
        return str(predictor.model.path)
    return type(predictor).__name__


def _label_columns(labels_csv: str | Path) -> list[str]:
    """The phase columns of a labels CSV (every column after ``file``)."""
    try:
        with open(labels_csv, encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh), [])
    except OSError as exc:
        raise LabelsError(f"cannot read labels: {exc.strerror or exc}", labels_csv) from None
    cols = [c.strip() for c in header[1:] if c.strip()]
    if not cols:
        raise LabelsError("no phase columns (header must be file,<phase>,…)", labels_csv)
    return cols


def _phase(name: str, labels_csv: str | Path) -> Phase:
    try:
        return get_phase(name)
    except XrdmtlError as exc:
        raise LabelsError(f"column {name!r}: {exc.reason}", labels_csv) from None


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _plot_name(file: str, root: Path) -> str:
    """A file name for the plot of ``file``: its path below ``root`` (the labels' folder), flattened."""
    base, _, index = file.partition("::")
    path = Path(base)
    rel = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
    stem = "_".join(rel.with_suffix("").parts) + (f"_{index}" if index else "")
    return _UNSAFE.sub("_", stem).strip("_") + ".png"


def plot_audit(
    pattern: Pattern,
    peaks: Peaks,
    evidence: dict[str, PhaseEvidence],
    labels: Sequence[int],
    names: Sequence[str],
    flagged: Sequence[str],
    path: str | Path,
) -> Path:
    """:func:`_plot_audit` with readable fonts."""
    from ..io.plots import readable

    with readable():
        return _plot_audit(pattern, peaks, evidence, labels, names, flagged, path)


def _plot_audit(
    pattern: Pattern,
    peaks: Peaks,
    evidence: dict[str, PhaseEvidence],
    labels: Sequence[int],
    names: Sequence[str],
    flagged: Sequence[str],
    path: str | Path,
) -> Path:
    """The evidence behind a flagged pattern: the pattern and its background (top), the
    background-removed pattern in noise units with each phase's sticks at its best lattice scale,
    matched peaks (o) and missing strong reflections (x) (bottom)."""
    from ..io.plots import new_figure, phase_color, save_figure

    q_lo, q_hi = peaks.q_range
    sticks = [
        m.expected_q for ev in evidence.values() for m in (*ev.matched, *ev.missing, *ev.overlapped)
    ]
    lo = max(q_lo, min(sticks, default=q_lo) - 0.15)
    hi = min(q_hi, max(sticks, default=q_hi) + 0.15)
    q = peaks.q
    cov = peaks.coverage & (q >= lo) & (q <= hi)
    fig, (top, bottom) = new_figure(
        2,
        1,
        figsize=(11, 7.5),
        sharex=True,
        layout="constrained",
        gridspec_kw={"height_ratios": [1, 1.8]},
    )
    top.plot(q[cov], peaks.signal[cov], color="black", lw=0.7, label="pattern")
    top.plot(q[cov], peaks.background[cov], color="grey", lw=0.8, ls="--", label="background")
    top.set_ylabel("intensity")
    top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    z = peaks.detrended / peaks.noise
    bottom.plot(q[cov], z[cov], color="black", lw=0.6)
    z_top = max(float(z[cov].max()) * 1.5, 3 * Z_FULL)
    band = LINEAR_Z / len(names)  # sticks sit below zero, in the linear part of the axis
    for k, name in enumerate(names):
        ev = evidence[name]
        color = phase_color(k)
        base = -(k + 1) * band
        refl = [*ev.matched, *ev.missing, *ev.overlapped]
        xs = np.array([m.expected_q for m in refl])
        heights = np.array([m.intensity for m in refl]) / 100.0 * 0.85 * band
        tag = " FLAGGED" if name in flagged else ""
        bottom.vlines(
            xs,
            base,
            base + heights,
            color=color,
            lw=1.4,
            label=f"{name} (label {labels[k]}, score {ev.score:.2f}, s={ev.lattice_scale:.3f}){tag}",
        )
        if ev.matched:
            bottom.plot(
                [m.found_q for m in ev.matched],
                [m.z for m in ev.matched],
                "o",
                mfc="none",
                color=color,
                ms=7,
            )
        if ev.missing:
            bottom.plot(
                [m.expected_q for m in ev.missing],
                [0.0] * len(ev.missing),
                "x",
                color=color,
                ms=7,
                mew=1.5,
            )
    bottom.axhline(0.0, color="grey", lw=0.4)
    bottom.set_yscale("symlog", linthresh=LINEAR_Z, linscale=2.0)
    bottom.set_ylim(-LINEAR_Z * 1.05, z_top)
    bottom.set_yticks([0, *(10.0**k for k in range(1, int(np.log10(z_top)) + 1))])
    bottom.set_ylabel("background removed / noise (symlog)")
    bottom.set_xlabel("Q (Å⁻¹)")
    bottom.set_xlim(lo, hi)
    fig.legend(
        *bottom.get_legend_handles_labels(), loc="outside lower center", ncols=2, frameon=False
    )
    top.set_title(
        f"{_short(pattern.source)}: contradicted label(s) {', '.join(flagged)}   (o matched, x missing)"
    )
    return save_figure(fig, path)
