"""``make bench``: run every ``bench_*.py`` in this folder and print its figures against the targets.

Each module defines ``bench() -> dict[str, float]`` (figure name → value, higher is better; a name
ending in ``_se`` is the standard error of the figure before it) and may
define ``TARGETS: dict[str, float]`` for its own figures; the project-wide targets are below.
``MAXIMA`` for figures where lower is better (latencies).
``python benchmarks/run.py [NAME...]`` runs only the modules whose name contains a NAME.
Exit status 1 if a benchmark raised, 0 otherwise (missed targets are shown, not fatal).
"""

from __future__ import annotations

import importlib.util
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent

# figure name → minimum (rates per second, on 2 CPU cores)
TARGETS: dict[str, float] = {
    "synth_patterns_per_s": 20_000,
    "frames_sim_per_s": 5,
    "frames_end_to_end_per_s": 100,
    "model_inference_patterns_per_s": 10_000,
    "predict_1d_files_per_s": 2_000,
}


def load(path: Path) -> ModuleType:
    """Import a benchmark file as a module (the folder need not be a package)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str]) -> int:
    console = Console()
    files = sorted(HERE.glob("bench_*.py"))
    if argv:
        files = [f for f in files if any(a in f.stem for a in argv)]
    table = Table(title="xrdmtl benchmarks")
    for col in ("benchmark", "figure", "value", "target", "", "time (s)"):
        table.add_column(col, justify="left" if col in ("benchmark", "figure") else "right")
    failed = 0
    for path in files:
        console.print(f"running {path.stem} …", highlight=False)
        start = time.perf_counter()
        try:
            module = load(path)
            figures = module.bench()
            targets = {**TARGETS, **getattr(module, "TARGETS", {})}
            maxima: dict[str, float] = getattr(module, "MAXIMA", {})
        except Exception:  # report and go on with the other benchmarks
            failed += 1
            console.print(traceback.format_exc(), style="red", highlight=False)
            table.add_row(
                path.stem, "[red]failed[/red]", "", "", "", f"{time.perf_counter() - start:.1f}"
            )
            continue
        elapsed = f"{time.perf_counter() - start:.1f}"
        for i, (name, value) in enumerate(figures.items()):
            target = targets.get(name, maxima.get(name))
            met = value <= target if name in maxima else target is not None and value >= target
            mark = "" if target is None else "[green]✓[/green]" if met else "[red]✗[/red]"
            sign = "≤" if name in maxima else "≥"
            table.add_row(
                path.stem if i == 0 else "",
                name,
                f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}",
                ""
                if target is None
                else f"{sign} {target:,.0f}"
                if target >= 100
                else f"{sign} {target:g}",
                mark,
                elapsed if i == 0 else "",
            )
    console.print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
