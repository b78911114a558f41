"""Cross-validated fine-tuning on labeled measured patterns: how much do N labels lift a model?

:func:`crossvalidate_finetune` fine-tunes a model on N labeled patterns of a labels CSV and tests it
on the rest, for several N and several stratified splits, and reports mean ± sd of the exact match
(all phase calls right) on the held-out patterns, next to the model before fine-tuning on the same
held-out patterns (a split's held-out set can be harder or easier than the whole). Splits depend only
on the labels, the N and the seed, so the unmasked and masked views of the same patterns (two CSVs
listing the same patterns in the same order) are split identically.

Labels are not gospel: given the patterns whose labels the audit contradicts
(:func:`xrdmtl.workflows.audit.audit_labels`), each run also scores the held-out patterns whose labels it does
not contradict, and ``drop_contradicted`` leaves the contradicted ones out of fine-tuning.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io.labels import LabeledPatterns


def strata_of(labels: np.ndarray) -> list[str]:
    """One stratum per label combination (``"110"`` = first two phases present)."""
    return ["".join(str(int(v)) for v in row) for row in np.asarray(labels)]


def stratified_split(strata: Sequence[str], n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` items drawn so each stratum is represented in proportion to its size (at
    least one of each stratum while ``n`` allows, largest remainders first), sorted."""
    strata = list(strata)
    if not 0 < n < len(strata):
        raise ValueError(f"N must lie between 1 and {len(strata) - 1}, got {n}")
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(strata):
        groups.setdefault(s, []).append(i)
    keys = sorted(groups, key=lambda k: (-len(groups[k]), k))
    sizes = np.array([len(groups[k]) for k in keys], dtype=float)
    quota = n * sizes / sizes.sum()
    take = np.floor(quota).astype(int)
    if n >= len(keys):  # every stratum at least once
        take = np.maximum(take, 1)
    while take.sum() > n:  # trim the strata most above their quota
        j = int(np.argmax(np.where(take > 1, take - quota, -np.inf)))
        take[j] -= 1
    order = np.argsort(-(quota - take), kind="stable")  # largest remainders first
    k = 0
    while take.sum() < n:
        j = order[k % len(keys)]
        if take[j] < sizes[j]:
            take[j] += 1
        k += 1
    picked = [
        int(i) for key, t in zip(keys, take, strict=True) for i in rng.permutation(groups[key])[:t]
    ]
    return np.sort(np.array(picked, dtype=int))


@dataclass
class CVResult:
    """Per-run exact matches and their summary per N."""

    labels_csv: str
    n_patterns: int
    runs: list[dict] = field(default_factory=list)  # n, split, train (files), exact, seconds, ...

    def summary(self) -> dict[int, dict]:
        """Per N: mean, sd (ddof 1; 0 for one run), runs and mean seconds per fine-tune, and
        ``mean_base`` / ``sd_base`` of the model before fine-tuning on the same held-out patterns; with
        contradicted labels known, also ``mean_uncontradicted`` / ``sd_uncontradicted`` (and
        ``..._base_uncontradicted``) over the held-out patterns whose labels the audit does not
        contradict."""
        out: dict[int, dict] = {}
        for n in sorted({r["n"] for r in self.runs}):
            runs = [r for r in self.runs if r["n"] == n]
            base = _mean_sd([r["exact_base"] for r in runs])
            out[n] = {**_mean_sd([r["exact"] for r in runs]), "runs": len(runs),
                      "mean_base": base["mean"], "sd_base": base["sd"],
                      "seconds": float(np.mean([r["seconds"] for r in runs]))}  # fmt: skip
            clean = [r for r in runs if r.get("exact_uncontradicted") is not None]
            if clean:
                tuned = _mean_sd([r["exact_uncontradicted"] for r in clean])
                before = _mean_sd([r["exact_base_uncontradicted"] for r in clean])
                out[n].update(mean_uncontradicted=tuned["mean"], sd_uncontradicted=tuned["sd"],
                              mean_base_uncontradicted=before["mean"], sd_base_uncontradicted=before["sd"])
        return out

    def to_dict(self) -> dict:
        return {
            "labels_csv": self.labels_csv,
            "n_patterns": self.n_patterns,
            "runs": self.runs,
            "summary": {str(k): v for k, v in self.summary().items()},
        }


def _mean_sd(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def crossvalidate_finetune(
    model: str | Path,
    labels_csv: str | Path,
    ns: Sequence[int] = (5, 10, 20),
    splits: int = 3,
    seed: int = 0,
    wavelength: float | None = None,
    x_unit: str | None = None,
    *,
    poni: str | Path | None = None,
    mask: str = "none",
    work_dir: str | Path | None = None,
    note: Callable[[str], None] | None = None,
    contradicted: Collection[str] = (),
    drop_contradicted: bool = False,
    **finetune_kwargs: Any,
) -> CVResult:
    """Fine-tune ``model`` on N labeled patterns of ``labels_csv`` and test on the rest, for each N in
    ``ns`` and ``splits`` stratified splits (split ``k`` of N from ``rng([seed, N, k])``).

    ``contradicted``: files (as the labels CSV resolves them) whose labels the audit contradicts;
    each run then also reports ``exact_uncontradicted``, and ``drop_contradicted`` leaves them out
    of the fine-tuning sets (they stay in the splits, so the splits do not change).

    Patterns are read as in ``predict`` (``wavelength``, ``x_unit``; frames with ``poni`` and
    ``mask``). ``finetune_kwargs`` go to :func:`xrdmtl.training.finetune.finetune` (steps, lattice adaptation, …).
    Fine-tuned models are written under ``work_dir`` (a temporary folder when None, removed after).
    Unreadable files are left out with a note.
    """
    from ..io.labels import load_labeled
    from ..model.files import load_model
    from ..model.preprocess import model_input
    from ..training.finetune import finetune

    base = load_model(model, device="cpu")
    data, files, failed = load_labeled(
        labels_csv, base.phases, base.grid, wavelength, x_unit, note, poni=poni, mask=mask
    )
    for line in failed:
        if note is not None:
            note(f"skipped: {line}")
    strata = strata_of(data.labels)
    flagged = set(contradicted)
    bad = np.array([f in flagged for f in files], dtype=bool)
    result = CVResult(str(labels_csv), len(files))
    tmp = tempfile.TemporaryDirectory(prefix="xrdmtl-cv-") if work_dir is None else None
    root = Path(tmp.name if tmp is not None else work_dir)  # type: ignore[arg-type]
    finetune_kwargs.setdefault("progress", False)
    try:
        for n in ns:
            for k in range(splits):
                idx = stratified_split(strata, n, np.random.default_rng([seed, n, k]))
                rest = np.setdiff1d(np.arange(len(files)), idx)
                t0 = time.perf_counter()
                out = root / f"n{n}_split{k}"
                tune = idx[~bad[idx]] if drop_contradicted and not bad[idx].all() else idx
                ft = finetune(
                    model,
                    LabeledPatterns(data.intensity[tune], data.coverage[tune], data.labels[tune]),
                    out,
                    seed=seed + k,
                    wavelength=wavelength,
                    **finetune_kwargs,
                )
                seconds = time.perf_counter() - t0
                tuned = load_model(out, device="cpu")
                x = model_input(data.intensity[rest], data.coverage[rest], base.grid.step)
                calls = tuned.predict_proba(x) >= tuned.thresholds
                right = (calls == data.labels[rest].astype(bool)).all(1)
                base_calls = base.predict_proba(x) >= base.thresholds
                base_right = (base_calls == data.labels[rest].astype(bool)).all(1)
                clean = ~bad[rest]
                result.runs.append(
                    {
                        "n": int(n),
                        "split": k,
                        "train": [files[i] for i in idx],
                        "tuned_on": len(tune),
                        "exact": float(right.mean()),
                        "exact_uncontradicted": float(right[clean].mean()) if bad.any() and clean.any() else None,
                        "exact_base": float(base_right.mean()),
                        "exact_base_uncontradicted": float(base_right[clean].mean()) if bad.any() and clean.any() else None,
                        "wrong": [files[i] for i in rest[~right]],
                        "seconds": round(seconds, 1),
                        "lattice": ft.lattice if hasattr(ft, "lattice") else None,
                    }
                )
                if note is not None:
                    note(f"N={n} split {k}: exact {right.mean():.3f} ({seconds:.0f} s)")
    finally:
        if tmp is not None:
            tmp.cleanup()
    return result


def format_table(rows: dict[str, CVResult]) -> str:
    """A markdown table, one row per named result (e.g. unmasked, masked) and N: exact match
    (mean ± sd) fine-tuned and before fine-tuning on the same held-out patterns, the same on the
    labels the audit does not contradict where known, runs and seconds per fine-tune."""
    audited = any("mean_uncontradicted" in s for r in rows.values() for s in r.summary().values())
    header = ["set", "N", "fine-tuned", "before fine-tuning"]
    header += ["fine-tuned, uncontradicted labels", "before, uncontradicted"] if audited else []
    header += ["runs", "s / fine-tune"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, r in rows.items():
        for n, s in r.summary().items():
            cells = [name, str(n), _pct_sd(s["mean"], s["sd"]), _pct_sd(s["mean_base"], s["sd_base"])]
            if audited:
                cells += ([_pct_sd(s["mean_uncontradicted"], s["sd_uncontradicted"]),
                           _pct_sd(s["mean_base_uncontradicted"], s["sd_base_uncontradicted"])]
                          if "mean_uncontradicted" in s else ["-", "-"])  # fmt: skip
            cells += [str(s["runs"]), f"{s['seconds']:.0f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct_sd(mean: float, sd: float) -> str:
    return f"{mean:.1%} ± {sd:.1%}"
