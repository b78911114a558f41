"""``xrdmtl experiment``: the paper's comparisons, run by the research harness of a source checkout.

The harness (``experiments/`` beside ``src/``: the comparisons, the report, the default model's recipe)
is not part of the installed package; this command finds it next to the package's sources and imports
it from there, or says in one line that this installation has none.
"""

from __future__ import annotations

import sys
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer

from ..errors import XrdmtlError
from .app import app, clean_errors, console


def checkout_root() -> Path:
    """The folder that would hold ``src/xrdmtl`` and ``experiments/`` in a source checkout."""
    return Path(__file__).resolve().parents[3]


def harness(name: str) -> ModuleType:
    """The module ``experiments.<name>`` of this package's source checkout."""
    root = checkout_root()
    folder = root / "experiments"
    if not (folder / f"{name}.py").is_file():
        raise XrdmtlError(
            "xrdmtl experiment needs the research harness of a source checkout (experiments/ beside "
            "src/), which this installation lacks: clone the repository and run `make experiment`"
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module = import_module(f"experiments.{name}")
    if Path(module.__file__ or "").resolve().parent != folder.resolve():
        raise XrdmtlError(f"another 'experiments' package shadows the harness in {folder}")
    return module


@app.command("experiment")
@clean_errors
def experiment_cmd(
    out: Annotated[
        Path,
        typer.Option("--out", help="Folder for results.json, the report, cached data and models."),
    ],
    quick: Annotated[
        bool, typer.Option("--quick", help="Smaller budgets: at most 10 minutes on 2 cores.")
    ] = False,
    toy: Annotated[
        bool, typer.Option("--toy", help="Tiny budgets: a smoke test of the pipeline (seconds).")
    ] = False,
    seeds: Annotated[
        int | None, typer.Option("--seeds", min=1, help="Seeds per setting (default: 3; --toy: 2).")
    ] = None,
) -> None:
    """Run the paper's four comparisons (multi-task vs binary CNNs, losses, data efficiency, masked vs
    unmasked) and write results.json, report.md and a self-contained report.html into --out
    (from a source checkout: the harness lives in its experiments/ folder)."""
    from ..outputs import check_folder
    from .outputs import is_experiment

    if quick and toy:
        raise typer.BadParameter("--quick and --toy exclude each other")
    check_folder(out, "--out", ours=is_experiment)
    experiment, report = harness("experiment"), harness("report")
    preset = "toy" if toy else "quick" if quick else "full"
    config = experiment.ExperimentConfig.preset(preset, seeds=seeds)
    command = " ".join(
        ["xrdmtl experiment --out", str(out)]
        + [f"--{preset}"] * (preset != "full")
        + ([f"--seeds {seeds}"] if seeds is not None else [])
    )
    results = experiment.run_experiment(out, config, progress=True, command=command)
    md = report.write_report(results, out)
    console.print(
        f"results: {results.path}\nreport: {md} and {md.with_suffix('.html')} "
        f"({results.data['meta']['wall_time_s']:.0f} s)",
        highlight=False,
    )
