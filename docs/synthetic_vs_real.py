"""Make docs/synthetic_vs_real.png and print realism figures: measured hdac patterns (unmasked and
masked, one per class) beside synthetic ones of the same class and look, as the model sees them.

Run: .venv/bin/python docs/synthetic_vs_real.py [--data ../shared/data/hdac]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from xrdmtl.io.plots import save_figure  # noqa: E402
from xrdmtl.model.preprocess import model_input  # noqa: E402
from xrdmtl.physics.background import smooth_background  # noqa: E402
from xrdmtl.physics.grid import DEFAULT_GRID  # noqa: E402
from xrdmtl.physics.pattern import Pattern  # noqa: E402
from xrdmtl.physics.phases import TARGETS, get_phase  # noqa: E402
from xrdmtl.synthesis.patterns import SynthConfig, Synthesizer  # noqa: E402

CLASSES = {"bc": (1, 1, 0), "c": (0, 1, 0), "r": (0, 0, 1), "n": (0, 0, 0)}
SHOWN = {"bc": "xy_bc_55", "c": "xy_c_17", "r": "xy_r_90", "n": "xy_n_71"}


def realism(intensity: np.ndarray, coverage: np.ndarray) -> dict[str, np.ndarray]:
    """Per pattern: strongest peak over the smooth background, background curvature (min/max of the
    background), noise after detrending (robust σ of the residual's point-to-point differences) relative
    to the background level and to the strongest peak, and the noise's lag-1 autocorrelation."""
    bg = smooth_background(intensity, coverage, DEFAULT_GRID.step)
    res = np.where(coverage, intensity - bg, np.nan)
    bgc = np.where(coverage, bg, np.nan)
    level = np.nanmedian(np.abs(bgc), axis=1)
    peak = np.nanmax(res, axis=1)
    d = np.diff(res, axis=1)
    noise = 1.4826 * np.nanmedian(np.abs(d - np.nanmedian(d, axis=1, keepdims=True)), axis=1) / np.sqrt(2)
    r0, r1 = res[:, :-1], res[:, 1:]
    ok = np.isfinite(r0) & np.isfinite(r1)
    mean = np.nanmean(res, axis=1, keepdims=True)
    ac = np.nansum(np.where(ok, (r0 - mean) * (r1 - mean), 0), 1) / np.nansum(np.where(ok, (r0 - mean) ** 2, 0), 1)
    return {"peak/bg": peak / level, "bg min/max": np.nanmin(bgc, 1) / np.nanmax(bgc, 1),
            "noise/bg": noise / level, "noise/peak": noise / peak, "lag-1 corr": ac}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/hdac"))
    ap.add_argument("--out", default=str(Path(__file__).with_name("synthetic_vs_real.png")))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    data = Path(args.data)
    grid = DEFAULT_GRID

    real: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] = {}
    for mode in ("unmasked", "masked"):
        with open(data / f"labels_{mode}.csv") as fh:
            rows = list(csv.reader(fh))[1:]
        ys, cs = [], []
        for r in rows:
            x, y = np.load(data / r[0], allow_pickle=False)
            i, c = Pattern(x, y, "2th_deg", 0.561).on_grid(grid)
            ys.append(i)
            cs.append(c)
        real[mode] = (np.stack(ys), np.stack(cs), [Path(r[0]).stem for r in rows])

    # synthetic: synchrotron µ-XRD look only, so the comparison is like for like
    syn = Synthesizer([get_phase(t) for t in TARGETS], grid, config=SynthConfig(p_lab=0.0))
    b = syn.sample(4000, np.random.default_rng(args.seed))

    print(f"{'set':22s}" + "".join(f"{k:>22s}" for k in realism(b.intensity[:2], b.coverage[:2])))
    for mode, unm in (("unmasked", True), ("masked", False)):
        sel = b.unmasked == unm
        for name, (y, c) in ((f"real {mode}", real[mode][:2]), (f"synthetic {mode}", (b.intensity[sel], b.coverage[sel]))):
            m = realism(y, c)
            cells = "".join(
                f"{np.nanpercentile(v, 50):>10.3g} [{np.nanpercentile(v, 10):.2g},{np.nanpercentile(v, 90):.2g}]".rjust(22)
                for v in m.values())
            print(f"{name:22s}{cells}")

    fig, axes = plt.subplots(len(CLASSES), 4, figsize=(20, 3.0 * len(CLASSES)), sharex=True)
    q = grid.values
    for row, (cls, lab) in enumerate(CLASSES.items()):
        for col, (mode, unm) in enumerate((("unmasked", True), ("masked", False))):
            y, c, names = real[mode]
            i = names.index(SHOWN[cls])
            j = int(np.flatnonzero((b.unmasked == unm) & (b.labels == lab).all(1))[0])
            for k, (src, yy, cc) in enumerate((("measured " + names[i], y[i], c[i]),
                                               (f"synthetic λ={b.wavelength[j]:.2f} Å", b.intensity[j], b.coverage[j]))):
                ax = axes[row, 2 * col + k]
                mi = model_input(yy, cc, grid.step)[0]
                ax.plot(q, np.where(cc, mi[0], np.nan), lw=0.6, color="black", label="normalised")
                ax.plot(q, np.where(cc, mi[1], np.nan) - 1.1, lw=0.6, color="tab:orange", label="background removed")
                ax.set_title(f"{cls} · {mode} · {src}", fontsize=9)
                ax.set_yticks([])
    axes[0, 0].legend(fontsize=7, loc="upper right")
    for ax in axes[-1]:
        ax.set_xlabel("Q (Å⁻¹)")
    fig.suptitle("Measured hdac patterns (λ = 0.561 Å) and synthetic ones of the same class, as the model "
                 "sees them (preprocess.model_input channels 0 and 1)", fontsize=11)
    fig.tight_layout()
    save_figure(fig, args.out, dpi=80)


if __name__ == "__main__":
    main()
