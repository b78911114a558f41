"""Evaluation: predict the files of a labels CSV and score the calls against the labels."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..inference.predictor import Predictor
from ..io.labels import read_labels
from ..io.read import ReadOptions, checked_options, frame_index

_MISCLASSIFIED = ("probabilities", "warning", "flags")  # of a misclassified pattern's prediction


def evaluate_labels(
    predictor: Predictor,
    labels_csv: str | Path,
    options: ReadOptions | None = None,
    *,
    workers: int | None = None,
    scheduler: Any = None,
    progress: bool = True,
    note: Callable[[str], None] | None = None,
) -> dict:
    """Predict the files of a labels CSV and score the calls against the labels.

    ``options``, ``workers``, ``scheduler`` and ``progress`` go to :meth:`Predictor.predict_files`.
    Returns a JSON-ready dict: ``n``, ``exact_match``, per-phase metrics under
    ``phases`` (see :func:`xrdmtl.model.metrics.classification_report`), ``misclassified`` and ``failed``
    (files named as in the CSV).
    """
    from ..model.metrics import classification_report

    options = checked_options(options)
    files, labels = read_labels(labels_csv, predictor.phases, note)
    folder = Path(labels_csv).parent
    bases = list(dict.fromkeys(f.rpartition("::")[0] if frame_index(f) else f for f in files))
    by_file = {
        p.file: p
        for p in predictor.predict_files(
            bases, options, workers, progress, scheduler=scheduler, expand=False
        )
    }
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
            misclassified.append(
                {
                    "file": shown,
                    "labels": [n for n, v in zip(phases, labels[i], strict=True) if v],
                    **{k: v for k, v in pred.to_dict().items() if k in _MISCLASSIFIED},
                    "calls": pred.found,
                }
            )
    if not keep:
        from ..errors import LabelsError

        first = failed[0]["error"] if failed else "no file"
        raise LabelsError(
            f"no labeled pattern could be read ({len(failed)} failed; the first: {first})",
            labels_csv,
        )
    y = labels[keep]
    calls = np.array([[by_file[files[i]].calls[n] for n in phases] for i in keep], dtype=np.uint8)
    scores = np.array([[by_file[files[i]].probabilities[n] for n in phases] for i in keep])
    report = classification_report(
        y, calls.reshape(len(keep), len(phases)), scores.reshape(len(keep), len(phases)), phases
    )
    return {
        **report,
        "labels_file": str(labels_csv),
        "misclassified": misclassified,
        "failed": failed,
    }
