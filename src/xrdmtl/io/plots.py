"""Figures: a pattern with reference sticks and saliency, and a run timeline (matplotlib).

Figures are made with matplotlib's object API (:func:`new_figure`), never through pyplot's global
state, so no backend is chosen or forced: importing this module leaves an interactive session's
backend alone, and writing a file needs no display. Every figure is written atomically (a
temporary file in the target folder, then ``os.replace``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from matplotlib.figure import Figure

from ..atomic import atomic_path
from ..physics.miller import format_hkl
from ..physics.pattern import Pattern
from ..physics.phases import Reflections

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

PHASE_COLORS = (
    "tab:red",
    "tab:blue",
    "tab:green",
    "tab:purple",
    "tab:orange",
    "tab:brown",
    "tab:pink",
)


def phase_color(index: int) -> str:
    """The colour of the ``index``-th phase of a model (stable across figures)."""
    return PHASE_COLORS[index % len(PHASE_COLORS)]


def new_figure(
    nrows: int = 1,
    ncols: int = 1,
    *,
    figsize: tuple[float, float] = (8.0, 4.0),
    layout: Literal["constrained", "compressed", "tight"] | None = None,
    **subplots: Any,
) -> tuple[Figure, Any]:
    """A figure and its axes, as ``pyplot.subplots`` returns them, without pyplot (no backend)."""
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(nrows, ncols, **subplots)


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Save ``fig`` to ``path`` atomically (creating its folder) and close it (if pyplot made it)."""
    path = Path(path)
    try:
        with atomic_path(
            path, suffix=path.suffix
        ) as tmp:  # savefig picks the format from the suffix
            fig.savefig(tmp, dpi=dpi)
    finally:
        import matplotlib.pyplot as plt  # importing pyplot chooses no backend; closing frees its figure

        plt.close(fig)
    return path


FONT: dict[RcKeyType, Any] = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 10,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
}
N_HKL_LABELS = 6  # hkl labels per phase: its strongest matched reflections


def readable() -> Any:
    """A context in which figures get fonts one can read on a laptop screen (:data:`FONT`)."""
    import matplotlib

    return matplotlib.rc_context(FONT)


_rc = readable


def _signed_sqrt(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return np.asarray(np.sign(v) * np.sqrt(np.abs(v)))


def _signed_square(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return np.asarray(np.sign(v) * v * v)


def _peak_near(
    q: np.ndarray,
    top: np.ndarray,
    shown: np.ndarray,
    ok: np.ndarray,
    at: float,
    floor: float = -np.inf,
    half: float = 0.03,
) -> tuple[float, float]:
    """(Q, height on the panel) of the peak a reflection or an unexplained position at ``at``
    sits on: the highest point within ``half`` Å⁻¹ of the background-inclusive pattern ``top``,
    drawn at the panel's curve ``shown`` there, never below ``floor`` (the background: 0 on a
    background-removed panel)."""
    near = ok & (np.abs(q - at) <= half)
    if not near.any():
        return at, max(float(np.interp(at, q[ok], shown[ok])), floor)
    i = np.flatnonzero(near)[np.argmax(top[near])]
    return float(q[i]), max(float(shown[i]), floor)


LABEL_ROWS = 3  # hkl labels stagger over this many rows above their peaks, else are dropped
LABEL_CHAR_PT = 5.6  # width of one character of a 9 pt label
AXES_WIDTH_PT = 11 * 72 * 0.85  # the main panel's width in the 11-inch figure


def _label_width(text: str, span: float) -> float:
    """Width in Q of a label on an axis spanning ``span`` Å⁻¹ (mathtext markup not counted)."""
    visible = (
        text.replace("\\bar", "").replace("\\ ", " ").strip("$").replace("{", "").replace("}", "")
    )
    return (len(visible) + 1) * LABEL_CHAR_PT * span / AXES_WIDTH_PT


def _place_labels(ax: Any, labels: list[Label], span: float, taken: list[float]) -> None:
    """hkl labels ``(Q, y, text, colour, priority)`` above their peaks, highest priority first,
    each on the lowest of :data:`LABEL_ROWS` rows where it overlaps no label placed before (nor,
    on the first row, a "?" mark at the Q values ``taken``); a label with no free row is dropped."""
    rows: list[list[tuple[float, float]]] = [
        [(t - _label_width("?", span) / 2, t + _label_width("?", span) / 2) for t in taken]
    ] + [[] for _ in range(LABEL_ROWS - 1)]
    for qx, y, text, color, _ in sorted(labels, key=lambda lab: -lab[4]):
        w = _label_width(text, span) / 2
        row = next(
            (r for r, used in enumerate(rows) if all(qx + w <= a or qx - w >= b for a, b in used)),
            None,
        )
        if row is None:
            continue
        rows[row].append((qx - w, qx + w))
        ax.annotate(
            text,
            (qx, y),
            xytext=(0, 7 + 11 * row),
            textcoords="offset points",
            ha="center",
            fontsize=9,
            color=color,
        )


def _two_theta_axis(ax: Any, wavelength: float) -> None:
    """A top axis in 2θ (°) at ``wavelength`` (Å) for a Q (Å⁻¹) axis."""
    k = wavelength / (4 * np.pi)

    def to_tth(q: np.ndarray) -> np.ndarray:
        return np.asarray(
            np.degrees(2 * np.arcsin(np.clip(np.asarray(q, dtype=float) * k, -1.0, 1.0)))
        )

    def to_q(tth: np.ndarray) -> np.ndarray:
        return np.asarray(np.sin(np.radians(np.asarray(tth, dtype=float)) / 2) / k)

    top = ax.secondary_xaxis("top", functions=(to_tth, to_q))
    top.set_xlabel(f"2θ (°) at λ = {wavelength:g} Å")


def _d_axis(ax: Any) -> None:
    """A second bottom axis in d-spacing (Å) below the Q (Å⁻¹) axis."""

    def swap(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        return 2 * np.pi / np.where(np.abs(v) > 1e-9, v, 1e-9)

    height = ax.get_position().height * ax.figure.get_figheight() * 72  # points (before layout)
    d = ax.secondary_xaxis(-min(0.9, 50.0 / max(height, 1.0)), functions=(swap, swap))
    d.set_xlabel("d (Å)")


def _title(
    title: str | None, found: Sequence[str], probabilities: Mapping[str, float] | None, warning: str
) -> str:
    """Title lines: the file, the calls with their probabilities, and the warnings (wrapped)."""
    import textwrap

    lines = [title or ""]
    if probabilities is not None:
        calls = ", ".join(f"{n} p={probabilities[n]:.2f}" for n in found) or "no phase of the model"
        others = ", ".join(f"{n} {v:.2f}" for n, v in probabilities.items() if n not in found)
        lines.append(f"found: {calls}" + (f"   (not found: {others})" if others else ""))
    if warning:
        wrapped = textwrap.wrap(f"warning: {warning}", 110)
        lines += wrapped[:3] + (["…"] if len(wrapped) > 3 else [])
    return "\n".join(line for line in lines if line)


def plot_pattern(
    pattern: Pattern | tuple[np.ndarray, np.ndarray],
    phases_found: Sequence[str],
    reflections: Mapping[str, Reflections | None],
    saliency: Mapping[str, np.ndarray] | None = None,
    path: str | Path = "pattern.png",
    **options: Any,
) -> Path:
    """Draw :func:`pattern_figure` and write it to ``path`` (PNG, atomically)."""
    with _rc():
        fig = pattern_figure(pattern, phases_found, reflections, saliency, **options)
        return save_figure(fig, path)


def _panel_rows(panel: Any, names: Sequence[str], colors: Mapping[str, str], offset: float) -> None:
    """One row per name on ``panel`` (bottom up), its tick label in the phase's colour."""
    panel.set_yticks(np.arange(len(names)) + offset, list(names))
    for tick, name in zip(panel.get_yticklabels(), names, strict=True):
        tick.set_color(colors.get(name, "grey"))
    panel.set_ylim(0, max(len(names), 1) + 0.15)


def _panel_note(panel: Any, text: str) -> None:
    """A small grey note in the top left corner of ``panel``."""
    panel.text(
        0.005,
        0.97,
        text,
        transform=panel.transAxes,
        ha="left",
        va="top",
        fontsize=9,
        color="dimgrey",
    )


def _mark_unexplained(ax: Any, qu: float, yu: float) -> None:
    """A "?" with an arrow over a peak no called phase explains."""
    ax.annotate(
        "?",
        (qu, yu),
        xytext=(0, 14),
        textcoords="offset points",
        ha="center",
        fontsize=11,
        color="darkorange",
        fontweight="bold",
        arrowprops={"arrowstyle": "-|>", "color": "darkorange", "lw": 1.2},
    )


def _saliency_panel(
    sax: Any,
    phases_found: Sequence[str],
    sal_map: Mapping[str, np.ndarray],
    sq: np.ndarray,
    colors: Mapping[str, str],
) -> None:
    """Where the model looked to call each phase: its positive saliency over ``sq``, one row each."""
    names = [n for n in phases_found if n in sal_map]
    for k, name in enumerate(names):
        sal = np.clip(np.asarray(sal_map[name], dtype=float), 0.0, None)
        sal = np.convolve(sal, np.ones(7) / 7, mode="same")
        top = float(sal.max()) or 1.0
        sax.fill_between(
            sq, k, k + 0.9 * sal / top, color=colors.get(name, "grey"), alpha=0.6, lw=0
        )
    _panel_rows(sax, names, colors, 0.45)
    _panel_note(sax, "where the model looked to call each phase (saliency)")


Label = tuple[float, float, str, str, float]  # Q, y, text, colour, priority


def _sticks_panel(
    stx: Any,
    ax: Any,
    shown: Sequence[str],
    reflections: Mapping[str, Reflections | None],
    colors: Mapping[str, str],
    matched: Mapping[str, Sequence[float]],
    probabilities: Mapping[str, float] | None,
    q_range: tuple[float, float],
    marker_at: Any,
) -> list[Label]:
    """One row of reference sticks per phase of ``shown`` on ``stx`` (matched reflections solid,
    the others faint), a marker on ``ax`` at each matched reflection's peak (``marker_at``: Q →
    where to draw it, None when the panel has no data) and, returned, the hkl labels to place."""
    lo, hi = q_range
    labels: list[Label] = []
    for k, name in enumerate(shown):
        refl = reflections[name]
        assert refl is not None
        color = colors.get(name, "grey")
        keep = (refl.q >= lo) & (refl.q <= hi) & (refl.intensity >= 0.5)
        base = len(shown) - 1 - k
        hits = np.asarray(matched.get(name, []), dtype=float)
        idx = (
            np.unique(np.argmin(np.abs(refl.q[None, :] - hits[:, None]), axis=1))
            if hits.size
            else np.zeros(0, int)
        )
        hit = np.zeros(refl.q.size, bool)
        hit[idx] = True
        for sel, alpha in ((keep & ~hit, 0.35), (keep & hit, 1.0)):
            top = base + 0.1 + 0.8 * refl.intensity[sel] / 100.0
            stx.vlines(refl.q[sel], base, top, color=color, lw=1.6, alpha=alpha)
        p = "" if probabilities is None else f" (p={probabilities.get(name, float('nan')):.2f})"
        marker = {"mfc": "none", "color": color, "ms": 7, "mew": 1.3}
        ax.plot([], [], "o", **marker, label=f"{name}{p}: matched reflection")
        if idx.size and marker_at is not None:
            at = [marker_at(float(refl.q[i])) for i in idx]
            ax.plot([a[0] for a in at], [a[1] for a in at], "o", **marker)
            labels += [
                (*at[j], format_hkl(refl.hkl[idx[j]], "tex"), color, float(refl.intensity[idx[j]]))
                for j in np.argsort(-refl.intensity[idx])[:N_HKL_LABELS]
            ]
    _panel_rows(stx, list(reversed(shown)), colors, 0.4)
    _panel_note(stx, "reference reflections (solid: a detected peak sits on it)")
    return labels


def pattern_figure(
    pattern: Pattern | tuple[np.ndarray, np.ndarray],
    phases_found: Sequence[str],
    reflections: Mapping[str, Reflections | None],
    saliency: Mapping[str, np.ndarray] | None = None,
    *,
    title: str | None = None,
    probabilities: Mapping[str, float] | None = None,
    q_range: tuple[float, float] | None = None,
    saliency_q: np.ndarray | None = None,
    background_removed: np.ndarray | None = None,
    wavelength: float | None = None,
    matched: Mapping[str, Sequence[float]] | None = None,
    unexplained: Sequence[float] | None = None,
    warning: str = "",
    fit: np.ndarray | None = None,
) -> Figure:
    """A pattern as a diffraction scientist reads it: against Q (Å⁻¹) with 2θ at ``wavelength``
    on top and d (Å) below; the reference sticks of ``phases_found`` under the data, matched
    reflections marked (o) and labelled hkl, unexplained peaks marked (▼ ?); calls, probabilities
    and warnings in the title; legends outside the data.

    ``pattern``: a :class:`Pattern` or ``(q, intensity)`` (NaN where there is no data);
    ``background_removed``: the pattern on the same Q less its smooth background (the model's
    channel 1), drawn as the main panel on a square-root scale so that weak peaks show, with the
    measured pattern above it;
    ``reflections``: reference tables by phase name, in the model's order (which fixes the colours);
    ``matched``: per phase, the reference Q values a detected peak sits on; ``saliency``: per phase,
    a map over ``saliency_q`` (default: the pattern's Q) drawn as the regions that raised each call;
    ``fit``: the fitted curve on the same Q as the main panel, drawn over it with the residual.
    """
    if isinstance(pattern, Pattern):
        q, y = pattern.q, pattern.y
        title = title or pattern.source
        wavelength = wavelength or pattern.wavelength
    else:
        q, y = (np.asarray(a, dtype=float) for a in pattern)
    finite = np.isfinite(y)
    lo, hi = q_range or (float(np.nanmin(q[finite])), float(np.nanmax(q[finite])))
    colors = {name: phase_color(i) for i, name in enumerate(reflections)}
    sal_map: Mapping[str, np.ndarray] = saliency or {}
    show_sal = any(n in sal_map for n in phases_found)
    removed = background_removed is not None
    main_y = np.where(finite, background_removed, np.nan) if background_removed is not None else y
    shown = [n for n in phases_found if reflections.get(n) is not None]
    heights = [1.0, 3.2] + ([0.3 + 0.3 * len(shown)] if shown else []) + ([0.9] if show_sal else [])
    with _rc():
        fig = Figure(figsize=(11, 5.6 + sum(heights[2:]) * 1.1), layout="constrained")
        axes = fig.subplots(len(heights), 1, sharex=True, gridspec_kw={"height_ratios": heights})
        raw, ax = axes[0], axes[1]
        raw.plot(q, y, color="black", lw=0.8)
        raw.set_ylabel("measured")
        raw.set_yticks([])
        if wavelength:
            _two_theta_axis(raw, wavelength)
        ax.plot(
            q,
            main_y,
            color="black",
            lw=0.8,
            label="pattern" + (" (background removed)" if removed else ""),
        )
        ok = np.isfinite(main_y) & (q >= lo) & (q <= hi)
        y_lo = float(np.nanmin(main_y[ok])) if ok.any() else 0.0
        y_hi = float(np.nanmax(main_y[ok])) if ok.any() else 1.0
        span = (y_hi - y_lo) or 1.0
        floor = 0.0 if removed else -np.inf  # markers sit on peaks, never below the background
        labels: list[Label] = []
        if shown:  # one row of sticks per phase found: matched reflections solid, the others faint

            def marker_at(at: float) -> tuple[float, float]:
                return _peak_near(q, y, main_y, ok, at, floor)

            labels = _sticks_panel(
                axes[2],
                ax,
                shown,
                reflections,
                colors,
                matched or {},
                probabilities,
                (lo, hi),
                marker_at if ok.any() else None,
            )
        _place_labels(ax, labels, hi - lo, [float(v) for v in unexplained or []])
        for qu in unexplained or []:
            yu = _peak_near(q, y, main_y, ok, float(qu), floor)[1] if ok.any() else y_hi
            _mark_unexplained(ax, float(qu), yu)
        if unexplained:
            ax.plot(
                [],
                [],
                marker="$?$",
                ls="none",
                color="darkorange",
                ms=9,
                label="peak no called phase explains",
            )
        if fit is not None:
            y_lo = _draw_fit(ax, q, main_y, fit, y_lo, span)
        ax.set_ylim(y_lo - 0.03 * span, y_hi + 0.45 * span)  # room above the peaks for labels
        ax.set_yscale("function", functions=(_signed_sqrt, _signed_square))
        ax.set_ylabel("intensity − background (√ scale)" if removed else "intensity (√ scale)")
        ax.set_xlim(lo, hi)
        fig.legend(
            loc="outside lower center",
            ncols=min(3, len(shown) + 1 + bool(unexplained)),
            frameon=False,
        )
        if show_sal:
            _saliency_panel(
                axes[-1], phases_found, sal_map, q if saliency_q is None else saliency_q, colors
            )
        axes[-1].set_xlabel("Q (Å⁻¹)")
        _d_axis(axes[-1])
        fig.suptitle(
            _title(title, phases_found, probabilities, warning), fontsize=11, ha="left", x=0.01
        )
    return fig


def _draw_fit(
    ax: Any, q: np.ndarray, data: np.ndarray, fit: np.ndarray, y_lo: float, span: float
) -> float:
    """The fitted curve over the data and the residual (data − fit) in a band under them; returns
    the new lower limit of the panel."""
    ax.plot(q, fit, color="crimson", lw=0.9, alpha=0.8, label="fit at the refined cells")
    resid = data - fit
    amp = float(np.nanmax(np.abs(resid))) if np.isfinite(resid).any() else 1.0
    base = y_lo - 0.12 * span
    ax.plot(q, base + 0.1 * span * resid / (amp or 1.0), color="grey", lw=0.6, label="residual")
    return base - 0.12 * span


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
    with readable():
        fig = Figure(figsize=(11, 4.2), layout="constrained")
        ax = fig.subplots()
        for i, name in enumerate(phases):
            ax.plot(
                index[order],
                probabilities[order, i],
                color=phase_color(i),
                lw=1.2,
                marker="." if len(index) < 200 else None,
                label=name,
            )
            if thresholds is not None:
                ax.axhline(thresholds[i], color=phase_color(i), lw=0.6, ls="--")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("frame")
        ax.set_ylabel("probability")
        fig.legend(loc="outside right upper", frameon=False)  # beside the curves, never over them
        if title:
            ax.set_title(title)
        return save_figure(fig, path)
