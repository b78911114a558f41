"""``make demo``: predict the bundled example patterns with the shipped default model.

Runs exactly what a user would type::

    xrdmtl predict <examples>/*.npy --wavelength 0.561 --out demo_out/predictions.csv --plot demo_out/plots
    xrdmtl evaluate --labels <examples>/labels.csv --wavelength 0.561
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from .app import app

OUT = Path("demo_out")


def examples_dir() -> Path:
    """Folder of the example patterns shipped with the package."""
    return Path(str(resources.files("xrdmtl") / "data" / "examples"))


def main() -> int:
    ex = examples_dir()
    files = sorted(str(p) for p in ex.glob("*.npy"))
    commands = [
        ["predict", *files, "--wavelength", "0.561", "--out", str(OUT / "predictions.csv"),
         "--plot", str(OUT / "plots")],
        ["evaluate", "--labels", str(ex / "labels.csv"), "--wavelength", "0.561"],
    ]
    for args in commands:
        shown = [a.replace(str(ex), "<examples>") for a in args]
        print("\n$ xrdmtl " + " ".join(shown), flush=True)
        try:
            app(args, prog_name="xrdmtl", standalone_mode=False)
        except SystemExit as exc:  # typer exits on errors; carry the code
            if exc.code:
                return int(exc.code)
    print(f"\nPredictions: {OUT / 'predictions.csv'}   plots: {OUT / 'plots'}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
