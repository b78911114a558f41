"""Figures: a pattern with reference sticks and saliency, and a run timeline (matplotlib).

Figures are made with matplotlib's object API (:func:`new_figure`), never through pyplot's global
state, so no backend is chosen or forced: importing this module leaves an interactive session's
backend alone, and writing a file needs no display. Every figure is written atomically (a
temporary file in the target folder, then ``os.replace``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..atomic import atomic_path
from ..physics.pattern import Pattern
from ..physics.phases import Reflections

PHASE_COLORS = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:pink")


def phase_color(index: int) -> str:
    """The colour of the ``index``-th phase of a model (stable across figures)."""
    return PHASE_COLORS[index % len(PHASE_COLORS)]


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] = (8.0, 4.0),
               **subplots: Any) -> tuple[Figure, Any]:
    """A figure and its axes, as ``pyplot.subplots`` returns them, without pyplot (no backend)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **subplots)


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Save ``fig`` to ``path`` atomically (creating its folder) and close it (if pyplot made it)."""
    path = Path(path)
    try:
        with atomic_path(path, suffix=path.suffix) as tmp:  # savefig picks the format from the suffix
            fig.savefig(tmp, dpi=dpi)
    finally:
        import matplotlib.pyplot as plt  # importing pyplot chooses no backend; closing frees its figure

        plt.close(fig)
    return path


def plot_pattern(
    pattern: Pattern | tuple[np.ndarray, np.ndarray],
    phases_found: Sequence[str],
    reflections: Mapping[str, Reflections | None],
    saliency: Mapping[str, np.ndarray] | None = None,
    path: str | Path = "pattern.png",
    *,
    title: str | None = None,
    probabilities: Mapping[str, float] | None = None,
    q_range: tuple[float, float] | None = None,
    saliency_q: np.ndarray | None = None,
) -> Path:
    """Plot a pattern against Q with reference sticks of ``phases_found`` and, optionally, saliency.

    ``pattern``: a :class:`Pattern` or ``(q, intensity)`` (NaN where there is no data);
    ``reflections``: reference tables by phase name, in the model's order (which fixes the colours);
    ``saliency``: per phase, a map over ``saliency_q`` (default: the pattern's Q) drawn in a lower panel.
    """
    if isinstance(pattern, Pattern):
        q, y = pattern.q, pattern.y
        title = title or pattern.source
    else:
        q, y = (np.asarray(a, dtype=float) for a in pattern)
    finite = np.isfinite(y)
    lo, hi = q_range or (float(np.nanmin(q[finite])), float(np.nanmax(q[finite])))
    colors = {name: phase_color(i) for i, name in enumerate(reflections)}
    show_sal = bool(saliency)
    fig, axes = new_figure(
        2 if show_sal else 1, 1, figsize=(9, 5.5 if show_sal else 4), sharex=True, squeeze=False,
        gridspec_kw={"height_ratios": [3, 1.3]} if show_sal else None,
    )
    ax = axes[0, 0]
    ax.plot(q, y, color="black", lw=0.8)
    y_lo, y_hi = float(np.nanmin(y[finite])), float(np.nanmax(y[finite]))
    span = y_hi - y_lo or 1.0
    for name in phases_found:
        refl = reflections.get(name)
        if refl is None:
            continue
        keep = (refl.q >= lo) & (refl.q <= hi)
        heights = refl.intensity[keep] / 100.0 * 0.35 * span
        label = name if probabilities is None else f"{name} (p={probabilities.get(name, float('nan')):.2f})"
        ax.vlines(refl.q[keep], y_lo, y_lo + heights, color=colors.get(name, "grey"), lw=1.2, alpha=0.85,
                  label=label)
    if phases_found:
        ax.legend(loc="upper right", fontsize=8)
    else:
        ax.text(0.99, 0.95, "no target phase found", ha="right", va="top", transform=ax.transAxes, fontsize=8)
    ax.set_ylabel("intensity")
    ax.set_xlim(lo, hi)
    if title:
        ax.set_title(title, fontsize=9)
    if show_sal:
        sax = axes[1, 0]
        for name, sal in saliency.items():
            if name in phases_found or len(phases_found) == 0:
                sax.plot(q if saliency_q is None else saliency_q, sal, color=colors.get(name, "grey"), lw=0.8, label=name)
        sax.axhline(0.0, color="grey", lw=0.5)
        sax.set_ylabel("saliency")
        sax.set_ylim(-1.05, 1.05)
    axes[-1, 0].set_xlabel("Q (Å⁻¹)")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_timeline(
    index: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    phases: Sequence[str],
    path: str | Path,
    *,
    thresholds: Sequence[float] | None = None,
    title: str | None = None,
) -> Path:
    """Probability of each phase against frame index ``(N,)``, ``probabilities`` ``(N, T)``."""
    index = np.asarray(index)
    probabilities = np.asarray(probabilities, dtype=float)
    order = np.argsort(index)
    fig, ax = new_figure(figsize=(9, 3.5))
    for i, name in enumerate(phases):
        ax.plot(index[order], probabilities[order, i], color=phase_color(i), lw=1.0,
                marker="." if len(index) < 200 else None, label=name)
        if thresholds is not None:
            ax.axhline(thresholds[i], color=phase_color(i), lw=0.5, ls="--")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("frame")
    ax.set_ylabel("probability")
    ax.legend(loc="upper right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
