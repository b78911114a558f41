"""Regenerate docs/audit_hdac.md and its plots: ``.venv/bin/python docs/audit/audit_hdac.py``.

Audits both label files of ``../shared/data/hdac`` (λ = 0.561 Å) with the shipped default model when
there is one, else with peak evidence alone, and measures the peak matcher as a classical baseline.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

import numpy as np

from xrdmtl.io.read import ReadOptions
from xrdmtl.physics.grid import DEFAULT_GRID
from xrdmtl.physics.pattern import Pattern
from xrdmtl.physics.peaks import THRESHOLD, match_phases
from xrdmtl.physics.phases import TARGETS, get_phase
from xrdmtl.synthesis.patterns import Synthesizer
from xrdmtl.workflows.audit import AuditTable, audit_labels

ROOT = Path(__file__).resolve().parents[2]
HDAC = ROOT.parent / "shared" / "data" / "hdac"
DOC = ROOT / "docs" / "audit_hdac.md"
KEEP = (
    "masked_xy_c_62.png",
    "masked_xy_r_102.png",
    "unmasked_xy_bc_22.png",
)  # plots committed to docs/audit
NOTES = """\
How to read it: the score is the intensity-weighted fraction of a phase's ten strongest reflections
(inside the pattern's Q range) that have a detected peak within 0.012 Å⁻¹, a peak counting fully from
8 noise units up, less half the weight of reflections that are absent although the matched peaks say
they should stand 8 noise units high; the lattice floats over the phase's `priors.lattice_range`, and a peak
two phases both match goes to the one with more independent support. A label is *contradicted* when
labeled present with score < 0.2, or labeled absent with score ≥ 0.5 and a matched peak ≥ 10 noise
units (and, with a model, the model agrees with the peaks). hkl are written h k l run together
(2-12 = 2 -1 2). The fixed threshold 0.5 (half the strong reflections, each clearly significant) was
set by reasoning, not fitted; the significance constants (a peak counts fully, or is expected visible,
at twice the detection threshold of 4 noise units) were picked among a handful of settings compared on
these 29 patterns, so the fixed-threshold figure is not fully blind. The hindsight figures pick the
thresholds that maximise exact match on these very patterns. The synthetic threshold is the best single
one on 400 patterns of the default `Synthesizer` (seed 1): its patterns reach far weaker and sparser
signals than these, so it comes out low.

What the audit flags, and why:

- **xy_c_62** (labeled calcite only), both processings: bastnaesite's reflections are there (2-12 at
  z ≈ 100, 2-14, 300, 2-10, 4-22; unmasked also 002 at z ≈ 430) at lattice scale ≈ 0.999 of the
  measured La cell, and none of calcite's (its strongest, 104, is absent). The label is wrong: the
  pattern is bastnaesite.
- **xy_r_102** (labeled rhenium), masked: no rhenium reflection has a peak. Unmasked, three weak peaks
  (z 6–9) sit at rhenium's 002, 101 and 103 (uncertain): at most a trace of the gasket.
- **xy_c_17** (labeled calcite), masked: no calcite peak at all: masking removed the spots. Unmasked,
  calcite's 104 alone stands at z ≈ 12 (uncertain).
- **xy_bc_22** (labeled bastnaesite + calcite), unmasked: no bastnaesite peak, only calcite (104 at
  z ≈ 800), whereas the masked file has bastnaesite at z ≈ 70: the two files differ by more than a mask.
- **xy_r_98** (unmasked), labeled rhenium only: calcite's 104, 2-10, 108 and 2-16 have peaks (z 11–28)
  beside strong rhenium, and the model agrees. xy_r_94 shows the same lines (masked 104 and 2-16 at
  z ≈ 14; unmasked 104, 2-10 and 2-16 at z ≈ 33–41), uncertain only because 108 is missing or, masked,
  because the model does not call calcite. Calcite is probably present in these late-stage patterns.

Uncertain, worth a look: weak rhenium 002/101 peaks (z 6–13) in masked xy_bc_65 and xy_bc_82 and
unmasked xy_bc_82; masked bc patterns whose calcite shows only one or two reflections (few crystals in
the beam: xy_bc_74, 82); masked xy_r_110, whose rhenium 101 reaches only z 6."""


def synthetic_threshold(n: int = 400, seed: int = 1) -> float:
    """The single score threshold with the best exact match on ``n`` default synthetic patterns."""
    phases = [get_phase(p) for p in TARGETS]
    batch = Synthesizer(phases).sample(n, np.random.default_rng(seed))
    q = DEFAULT_GRID.values
    scores = []
    for y, cov in zip(batch.intensity, batch.coverage, strict=True):
        ev = match_phases(
            Pattern(q[cov], y[cov].astype(float), "q_A^-1", source="synthetic"), phases
        )
        scores.append([ev[p].score for p in TARGETS])
    score = np.array(scores)
    grid = np.round(np.linspace(0.0, 1.0, 101), 2)
    return float(max(grid, key=lambda t: ((score >= t) == batch.labels).all(1).mean()))


def baseline(table: AuditTable, synthetic: float) -> str:
    """Exact match of ``score >= threshold`` against the labels: fixed, from synthetic data, and
    chosen in hindsight."""
    files = sorted({r.file for r in table.rows})
    cell = {(r.file, r.phase): r for r in table.rows}
    score = np.array([[cell[(f, p)].evidence.score for p in table.phases] for f in files])
    label = np.array([[cell[(f, p)].label for p in table.phases] for f in files])

    def exact(t: np.ndarray | float) -> float:
        return float(((score >= t) == label).all(1).mean())

    grid = np.round(np.linspace(0.0, 1.0, 101), 2)
    one = max(grid, key=exact)
    cuts = [np.unique(np.concatenate([[0.0, 1.01], score[:, j]])) for j in range(len(table.phases))]
    per = max(itertools.product(*cuts), key=lambda t: exact(np.array(t)))
    return (
        f"fixed threshold {THRESHOLD}: {exact(THRESHOLD):.1%}; threshold chosen on synthetic data "
        f"({synthetic:.2f}): {exact(synthetic):.1%}; best single threshold in hindsight "
        f"({one:.2f}): {exact(one):.1%}; best per-phase thresholds in hindsight "
        f"({', '.join(f'{p} {t:.2f}' for p, t in zip(table.phases, per, strict=True))}): {exact(np.array(per)):.1%}"
    )


def main() -> None:
    sections, lines = [], []
    synthetic = synthetic_threshold()
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("masked", "unmasked"):
            table = audit_labels(
                HDAC / f"labels_{kind}.csv",
                None,
                ReadOptions(wavelength=0.561),
                plot_dir=tmp,
                note=print,
            )
            kept = {}
            for file, plot in table.plots.items():
                if Path(plot).name in KEEP:
                    kept[file] = str(shutil.copy(plot, DOC.parent / "audit" / Path(plot).name))
            table.plots = kept
            lines.append(f"- {kind}: {baseline(table, synthetic)}")
            sections.append(
                f"## {kind}\n\nModel: {table.model or 'none (peak evidence only)'}\n\n"
                + table.to_markdown(link_root=DOC.parent)
            )
    DOC.write_text(
        "# Label audit of the 29 HDAC patterns\n\n"
        "Generated by `.venv/bin/python docs/audit/audit_hdac.py` (which calls "
        "`xrdmtl.workflows.audit.audit_labels(labels_csv, None, ReadOptions(wavelength=0.561), plot_dir=...)` on both label files; "
        "`xrdmtl audit --labels ../shared/data/hdac/labels_masked.csv --wavelength 0.561 --plot DIR` "
        "prints the same table).\n\n"
        "## The peak matcher as a classical baseline (exact match, all three phases right)\n\n"
        + "\n".join(lines)
        + "\n\n"
        + NOTES
        + "\n\n"
        + "\n".join(sections)
    )


if __name__ == "__main__":
    main()
