"""``make demo``: the shipped default model on the bundled examples, then adaptation to a user's labels.

Runs exactly what a user would type::

    xrdmtl predict <examples>/*.npy --wavelength 0.561 --out demo_out/predictions.csv --plot demo_out/plots
    xrdmtl evaluate --labels <examples>/labels.csv --wavelength 0.561

then, on a run of 29 raw integrations of the paper's experiment (``<examples>/run``) of which the user
labeled every other one::

    xrdmtl evaluate --labels <run>/labels_rest.csv --wavelength 0.561
    xrdmtl finetune --labels <run>/labels_every_other.csv --wavelength 0.561 --unlabeled <run> --out demo_out/adapted --force
    xrdmtl evaluate --labels <run>/labels_rest.csv --wavelength 0.561 --model demo_out/adapted

(the default model, then the adapted one, on the 14 patterns nobody labeled for it; ``--force``
replaces the model an earlier demo wrote).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..io.examples import examples_dir
from .app import app

OUT = Path("demo_out")


def _run(args: list[str], ex: Path, title: str = "") -> int:
    if title:
        print(f"\n# {title}", flush=True)
    shown = [a.replace(str(ex), "<examples>") for a in args]
    print("$ xrdmtl " + " ".join(shown), flush=True)
    try:
        app(args, prog_name="xrdmtl", standalone_mode=False)
    except SystemExit as exc:  # typer exits on errors; carry the code
        return int(exc.code or 0)
    return 0


def main() -> int:
    ex = examples_dir()
    run = ex / "run"
    files = sorted(str(p) for p in ex.glob("*.npy"))
    w = ["--wavelength", "0.561"]
    steps = [
        (["predict", *files, *w, "--out", str(OUT / "predictions.csv"), "--plot", str(OUT / "plots")],
         "The shipped default model (synthetic training only) on six measured patterns"),
        (["evaluate", "--labels", str(ex / "labels.csv"), *w], ""),
        (["evaluate", "--labels", str(run / "labels_rest.csv"), *w],
         "A run of 29 raw patterns; you labeled every other one. The default model on the 14 others"),
        (["finetune", "--labels", str(run / "labels_every_other.csv"), *w, "--unlabeled", str(run),
          "--out", str(OUT / "adapted"), "--force"],
         "Adapt it to your 15 labels (the rest of the run given unlabeled)"),
        (["evaluate", "--labels", str(run / "labels_rest.csv"), *w, "--model", str(OUT / "adapted")],
         "The adapted model on the same 14 patterns"),
    ]  # fmt: skip
    for args, title in steps:
        code = _run(args, ex, title)
        if code:
            return code
    print(
        f"\nPredictions: {OUT / 'predictions.csv'}   plots: {OUT / 'plots'}/   adapted model: {OUT / 'adapted'}/"
    )
    print(_on_path())
    return 0


def _on_path() -> str:
    """How to type ``xrdmtl`` yourself: the command lives in the virtual environment's bin/."""
    import os
    import shutil

    where = Path(sys.executable).parent
    rel = Path(os.path.relpath(where))
    shown = rel if not rel.parts or rel.parts[0] != ".." else where
    if shutil.which("xrdmtl") == str(where / "xrdmtl"):
        return "xrdmtl is on your PATH: try `xrdmtl --help`."
    return (
        f"To type `xrdmtl` yourself: `source {shown / 'activate'}` (then `xrdmtl --help`), "
        f"or run it as {shown / 'xrdmtl'}."
    )


if __name__ == "__main__":
    sys.exit(main())
