"""The ``xrdmtl`` command line: a thin typer wrapper over the public API.

Every command prints :class:`~xrdmtl.errors.XrdmtlError` as one line (no traceback) and exits non-zero
when any input failed, after processing the rest.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from .errors import XrdmtlError

app = typer.Typer(
    name="xrdmtl",
    help="Phase identification in micro-XRD patterns with multi-task deep learning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
simulate_app = typer.Typer(help="Write synthetic patterns or detector frames with labels.", no_args_is_help=True)
app.add_typer(simulate_app, name="simulate")

console = Console()
err_console = Console(stderr=True)


def clean_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the project's errors into one red line on stderr and exit code 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except XrdmtlError as exc:
            err_console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False, soft_wrap=True)
            sys.exit(2)

    return wrapper


@app.command("phases")
@clean_errors
def phases_cmd(
    name: Annotated[str | None, typer.Argument(help="A library phase, or a --cif/--jcpds file's stem.")] = None,
    wavelength: Annotated[float | None, typer.Option("--wavelength", "-w", help="Wavelength in Å: adds 2θ.")] = None,
    cif: Annotated[list[Path] | None, typer.Option("--cif", help="Add a phase from a CIF (repeatable).")] = None,
    jcpds: Annotated[list[Path] | None, typer.Option("--jcpds", help="Add a Dioptas .jcpds phase.")] = None,
    max_rows: Annotated[int, typer.Option("--max", help="Show at most N reflections, the strongest.")] = 40,
) -> None:
    """The phase library (name, formula, space group, cell, source), or one phase's reflections."""
    from rich.table import Table

    from .phases import DISTRACTORS, TARGETS, Phase, get_phase, library

    if wavelength is not None and not wavelength > 0:
        raise XrdmtlError(f"--wavelength must be positive, got {wavelength}")
    phases = library()
    phases.update({p.name: p for p in map(Phase.from_cif, cif or [])})
    phases.update({p.name: p for p in map(Phase.from_jcpds, jcpds or [])})
    if name is None:
        table = Table(title="xrdmtl phase library")
        for col in ("name", "role", "formula", "space group", "a b c (Å) / α β γ (°)", "source"):
            table.add_column(col, overflow="fold")
        for key, p in phases.items():
            role = "target" if key in TARGETS else "distractor" if key in DISTRACTORS else "other"
            lengths, angles = (" ".join(f"{v:.{n}f}" for v in part) for part, n in ((p.cell[:3], 4), (p.cell[3:], 1)))
            table.add_row(key, role, p.formula, p.space_group, f"{lengths} / {angles}", p.source)
        console.print(table)
        return
    matches = {k: p for k, p in phases.items() if k.lower() == name.lower()}
    phase = next(iter(matches.values())) if matches else get_phase(name)
    refl = phase.reflections(wavelength).strongest(max_rows) if max_rows > 0 else phase.reflections(wavelength)
    title = f"{phase.name}  {phase.formula}  {phase.space_group}" + (
        f"  λ = {wavelength} Å" if wavelength else "  (no wavelength: intensities without LP)")
    table = Table(title=title)
    for col in ("hkl", "d (Å)", "Q (Å⁻¹)", *(["2θ (°)"] if wavelength else []), "I", "mult."):
        table.add_column(col, justify="right")
    for i in range(len(refl.q)):
        tth = [f"{refl.two_theta[i]:.3f}"] if wavelength else []
        table.add_row(" ".join(map(str, refl.hkl[i])), f"{refl.d[i]:.4f}", f"{refl.q[i]:.4f}", *tth,
                      f"{refl.intensity[i]:.1f}", str(refl.multiplicity[i]))
    console.print(table)


def main() -> None:  # pragma: no cover - console entry point
    app()
