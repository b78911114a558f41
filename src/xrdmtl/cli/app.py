"""The ``xrdmtl`` command line: a thin typer wrapper over the public API.

Every command prints :class:`~xrdmtl.errors.XrdmtlError` as one line (no traceback) and exits non-zero
when any input failed, after processing the rest.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Sequence
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from ..errors import OutputError, XrdmtlError
from ..progress import ProgressBar
from .notes import contradict, unused
from .outputs import ForceOpt

if TYPE_CHECKING:
    from ..io.read import ReadOptions

app = typer.Typer(
    name="xrdmtl",
    help="Phase identification in micro-XRD patterns with multi-task deep learning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
simulate_app = typer.Typer(
    help="Write synthetic patterns or detector frames with labels.", no_args_is_help=True
)
app.add_typer(simulate_app, name="simulate")

console = Console()
err_console = Console(stderr=True)


def _flags_read_as_flags() -> None:
    """``--help`` shows a boolean flag as ``--json``, not ``--json <bool>`` (which reads as if it took
    a value): typer prints a type for every option, flags included."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_xrdmtl", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    display_type_rich._xrdmtl = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_read_as_flags()


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        console.print(f"xrdmtl {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Phase identification in micro-XRD patterns with multi-task deep learning."""


def clean_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the project's errors into one red line on stderr and exit code 2, and Ctrl-C into one
    "interrupted" line and exit code 130 (no traceback, nothing half-written)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except XrdmtlError as exc:
            err_console.print(
                f"[red]error:[/red] {exc}", markup=True, highlight=False, soft_wrap=True
            )
            sys.exit(2)
        except KeyboardInterrupt as exc:
            what = str(exc) or "nothing written"
            err_console.print(f"interrupted (Ctrl-C): {what}", highlight=False, soft_wrap=True)
            _quiet_shutdown()
            sys.exit(130)

    return wrapper


def _quiet_shutdown() -> None:
    """After a handled Ctrl-C, a second one while Python joins the worker pool's threads at exit
    ends the process at once (the default action) instead of printing a traceback from
    ``threading._shutdown``. Set at the start of that shutdown, so a test run going on in-process
    keeps its own Ctrl-C handling."""
    import contextlib
    import signal
    import threading

    register = getattr(threading, "_register_atexit", None)  # runs before threads are joined
    if register is None or threading.current_thread() is not threading.main_thread():
        return
    with contextlib.suppress(RuntimeError):  # already shutting down
        register(signal.signal, signal.SIGINT, signal.SIG_DFL)


@app.command("phases")
@clean_errors
def phases_cmd(
    name: Annotated[
        str | None, typer.Argument(help="A library phase, or a --cif/--jcpds file's stem.")
    ] = None,
    wavelength: Annotated[
        float | None, typer.Option("--wavelength", "-w", help="Wavelength in Å: adds 2θ.")
    ] = None,
    cif: Annotated[
        list[Path] | None, typer.Option("--cif", help="Add a phase from a CIF (repeatable).")
    ] = None,
    jcpds: Annotated[
        list[Path] | None, typer.Option("--jcpds", help="Add a Dioptas .jcpds phase.")
    ] = None,
    max_rows: Annotated[
        int | None,
        typer.Option("--max", help="Show at most N reflections, the strongest (default 40)."),
    ] = None,
) -> None:
    """The phase library (name, formula, space group, cell, source), or one phase's reflections."""
    from rich.table import Table

    from ..physics.miller import format_hkl
    from ..physics.phases import Phase, get_phase, library, library_role

    if wavelength is not None and not wavelength > 0:
        raise XrdmtlError(f"--wavelength must be positive, got {wavelength}")
    if name is None:
        for option, value in (("--wavelength", wavelength), ("--max", max_rows)):
            if value is not None:
                unused(option, "it shapes one phase's reflection table: name the phase")
    max_rows = 40 if max_rows is None else max_rows
    phases = library()
    phases.update({p.name: p for p in map(Phase.from_cif, cif or [])})
    _note_slow_phases(phases.values() if name is not None else ())
    phases.update({p.name: p for p in map(Phase.from_jcpds, jcpds or [])})
    if name is None:
        table = Table(title="xrdmtl phase library")
        for col in ("name", "role", "formula", "space group", "a b c (Å) / α β γ (°)", "source"):
            table.add_column(col, overflow="fold")
        for key, p in phases.items():
            role = library_role(key)
            lengths, angles = (
                " ".join(f"{v:.{n}f}" for v in part)
                for part, n in ((p.cell[:3], 4), (p.cell[3:], 1))
            )
            table.add_row(key, role, p.formula, p.space_group, f"{lengths} / {angles}", p.source)
        console.print(table)
        return
    matches = {k: p for k, p in phases.items() if k.lower() == name.lower()}
    phase = next(iter(matches.values())) if matches else get_phase(name)
    refl = (
        phase.reflections(wavelength).strongest(max_rows)
        if max_rows > 0
        else phase.reflections(wavelength)
    )
    title = f"{phase.name}  {phase.formula}  {phase.space_group}" + (
        f"  λ = {wavelength} Å" if wavelength else "  (no wavelength: intensities without LP)"
    )
    table = Table(title=title)
    for col in ("hkl", "d (Å)", "Q (Å⁻¹)", *(["2θ (°)"] if wavelength else []), "I", "mult."):
        table.add_column(col, justify="right")
    for i in range(len(refl.q)):
        tth = [f"{refl.two_theta[i]:.3f}"] if wavelength and refl.two_theta is not None else []
        table.add_row(
            format_hkl(refl.hkl[i]),
            f"{refl.d[i]:.4f}",
            f"{refl.q[i]:.4f}",
            *tth,
            f"{refl.intensity[i]:.1f}",
            str(refl.multiplicity[i]),
        )
    console.print(table)


ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="Model folder (or its .safetensors file); default: the shipped model."
    ),
]
WavelengthOpt = Annotated[
    float | None,
    typer.Option(
        "--wavelength",
        "-w",
        help="Wavelength in Å for files that state none (needed for 2θ); "
        "a file's own wavelength wins, with a note where they differ.",
    ),
]
XUnitOpt = Annotated[
    str | None,
    typer.Option("--x-unit", help="x unit of 1D files: 2th_deg, q_A^-1, q_nm^-1 or d_A."),
]
PoniOpt = Annotated[
    Path | None, typer.Option("--poni", help="pyFAI geometry (.poni) for 2D frames.")
]
LabelsOpt = Annotated[
    Path, typer.Option("--labels", help="labels.csv: file,<phase>,... with 0/1 values.")
]
MaskOpt = Annotated[
    str, typer.Option("--mask", help="Frames: none, auto (anvil spots, hot pixels) or a mask file.")
]
ThresholdOpt = Annotated[
    float | None,
    typer.Option(
        "--threshold",
        help="Call a phase present at p ≥ T (default: the model's per-phase thresholds).",
    ),
]
GuardOpt = Annotated[
    bool,
    typer.Option(
        "--guard/--no-guard",
        help="Withhold a call when few of the phase's reflections have a peak while strong peaks "
        "stay unexplained (an unknown mineral); --no-guard keeps the network's calls.",
    ),
]
VerifyOpt = Annotated[
    bool,
    typer.Option(
        "--verify/--no-verify",
        help="The physics check (default): refine each phase against the pattern (cell, width, "
        "zero) and decide each call with the network; the refined cells go in the CSV "
        "(docs/verify.md). --no-verify: the network alone, as before the check existed.",
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", help="Processes reading and predicting (default: all cores)."),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler", help="Run on Dask: a scheduler address, or 'local' for a local cluster."
    ),
]


def _check_seed(seed: int) -> None:
    """A random seed is a non-negative integer (numpy and torch refuse the others)."""
    if not 0 <= seed < 2**32:
        raise XrdmtlError(f"--seed must be an integer from 0 to 2**32 - 1, got {seed}")


def _phase_list(phases: str) -> list[str]:
    """The comma-separated ``--phases``: at least one, each once."""
    names = [p.strip() for p in phases.split(",") if p.strip()]
    if not names:
        raise XrdmtlError(f"--phases names no phase (got {phases!r}): e.g. --phases calcite,quartz")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise XrdmtlError(f"--phases names {', '.join(twice)} more than once")
    return names


def _note_slow_phases(phases: Iterable[Any]) -> None:
    """A note for each phase whose reflections take long to compute (a large cell from a CIF)."""
    from ..physics.phases import slow_table_note

    for p in phases:
        line = slow_table_note(p)
        if line is not None:
            err_console.print(f"note: {line}", highlight=False, soft_wrap=True)


def _predictor(model: str | None, threshold: float | None, guard: bool, verify: bool = True) -> Any:
    """The Predictor for the CLI options (it checks the threshold)."""
    from ..inference.predictor import Predictor

    return Predictor(model, threshold=threshold, guard=guard, verify=verify)


def _reading_options(
    wavelength: float | None,
    x_unit: str | None,
    poni: Path | None,
    mask: str,
    files: Sequence[str] = (),
) -> ReadOptions:
    """The command's reading options (ReadOptions checks them); fail early, with one line, on
    options that cannot work, and note those that none of the run's ``files`` uses."""
    from ..io.read import ReadOptions
    from .notes import mask_without_geometry, reading_notes

    options = ReadOptions(wavelength, x_unit, poni, mask)
    if poni is not None:  # a broken geometry fails every frame: say so once, before any work
        from ..io.read import cached_integrator

        cached_integrator(str(poni), wavelength)
    mask_without_geometry(poni, mask)
    reading_notes(files, poni, mask, x_unit)
    return options


def _check_predict_outputs(
    files: list[str],
    poni: Path | None,
    out: Path | None,
    plot: Path | None,
    save_integrated: Path | None,
    save_mask: Path | None = None,
    model: str | None = None,
    mask: str = "none",
    force: bool = False,
) -> None:
    """Refuse, before any work, outputs the output rule (docs/outputs.md) forbids: one that would
    destroy an input (a pattern, the geometry, the mask, the model), replace a file
    predict did not write (without ``force``), or cannot be written."""
    from ..inference.parallel import integrated_conflicts
    from ..outputs import check_apart, check_folder
    from .outputs import check_out_file, check_plots, inputs_of

    if out is None and plot is None and save_integrated is None and save_mask is None:
        return
    others = {"--out": out, "--save-integrated": save_integrated, "--save-mask": save_mask}
    check_apart("--plot", plot, others)
    inputs = inputs_of(patterns=files, model=model, poni=poni, mask=mask)
    if out is not None:
        check_out_file(out, "--out", inputs, "predictions", force)
    check_plots(plot, inputs)
    for option, folder, suffix in (
        ("--save-integrated", save_integrated, ".xy"),
        ("--save-mask", save_mask, ".edf"),
    ):
        if folder is None:
            continue
        check_folder(folder, option, inputs=inputs, alongside=True)
        taken = integrated_conflicts(files, folder, poni is not None, suffix)
        if taken:
            more = f" and {len(taken) - 3} more" if len(taken) > 3 else ""
            raise OutputError(
                f"{option} {folder}: would overwrite {len(taken)} existing "
                f"file(s) ({', '.join(p.name for p in taken[:3])}{more}); choose a new folder "
                "or remove them"
            )


def _predictions_json(preds: list, predictor: Any) -> dict:
    """Predictions as one JSON-ready object: the model's phases and thresholds, then per pattern
    the probabilities, calls, warning, error, what it was read with, and the peaks behind the calls
    (:meth:`~xrdmtl.inference.results.Prediction.to_dict`)."""
    return {
        "phases": list(predictor.phases),
        "thresholds": [float(t) for t in predictor.thresholds],
        "n": len(preds),
        "failed": sum(not p.ok for p in preds),
        "predictions": [p.to_dict() for p in preds],
    }


def _clip(text: str, n: int = 60) -> str:
    """``text`` cut to ``n`` characters, with an ellipsis where cut (markup escaped)."""
    from rich.markup import escape

    return escape(text if len(text) <= n else text[: n - 1] + "…")


def _summary_table(preds: list, phases: list[str], title: str) -> Any:
    """A rich table: one row per pattern for small runs (probability per phase, ✓ where called),
    counts per phase for large ones."""
    from rich.markup import escape
    from rich.table import Table

    from .names import distinct_clips

    ok = [p for p in preds if p.ok]
    table = Table(title=title)
    if len(preds) <= 40:
        table.caption = "p per phase, ✓ = called present; full warnings in the CSV"
        # a file name keeps one line within the room left, cut where the names stay distinct
        room = max(16, min(60, err_console.width - sum(max(len(n), 6) + 3 for n in phases) - 28))
        shown = distinct_clips([p.file for p in preds], room)
        width = max(map(len, shown), default=4)  # kept whole: rich would cut names again
        table.add_column("file", no_wrap=True, min_width=width, max_width=room)
        for name in phases:
            table.add_column(name, justify="right", no_wrap=True, min_width=6)
        table.add_column("warning / error", overflow="fold", min_width=20)
        for p, file in zip(preds, map(escape, shown), strict=True):
            if p.ok:
                cells = [
                    f"[green]{p.probabilities[n]:.2f} ✓[/green]"
                    if p.calls[n]
                    else f"{p.probabilities[n]:.2f}"
                    for n in phases
                ]
                table.add_row(
                    file,
                    *cells,
                    f"[yellow]{_clip(p.warning)}[/yellow]" if p.warning else "",
                )
            else:
                table.add_row(file, *(["-"] * len(phases)), f"[red]{_clip(p.error)}[/red]")
        return table
    table.add_column("phase")
    table.add_column("found in", justify="right")
    table.add_column("mean p", justify="right")
    for name in phases:
        n_found = sum(p.calls[name] for p in ok)
        mean = sum(p.probabilities[name] for p in ok) / len(ok) if ok else float("nan")
        table.add_row(name, f"{n_found} / {len(ok)}", f"{mean:.2f}")
    return table


@app.command("examples")
@clean_errors
def examples_cmd(
    folder: Annotated[
        Path, typer.Argument(help="Folder to copy the examples into (made if needed).")
    ] = Path("examples"),
) -> None:
    """Copy the bundled example patterns into a folder: six of the paper's measured HDAC patterns
    (.npy, 2θ at 0.561 Å: give --wavelength 0.561) and their labels.csv, as the README tour uses them.
    Never overwrites a file."""
    from ..atomic import write_bytes
    from ..io.examples import examples_dir
    from ..outputs import check_folder

    src = examples_dir()
    files = sorted(
        p.relative_to(src)
        for p in src.rglob("*")
        if p.is_file()
        and not any(part.startswith((".", "__")) for part in p.relative_to(src).parts)
    )
    check_folder(folder, "examples FOLDER", alongside=True)
    taken = [str(p) for p in files if (folder / p).exists()]
    if taken:
        raise OutputError(
            f"{folder} already holds {', '.join(taken[:3])}{' …' if len(taken) > 3 else ''}: "
            "choose another folder or remove them"
        )
    for p in files:
        write_bytes(folder / p, (src / p).read_bytes(), overwrite=False)
    top = sum(p.suffix == ".npy" and len(p.parts) == 1 for p in files)
    more = sum(p.suffix == ".npy" and len(p.parts) > 1 for p in files)
    extra = f"; {more} more of one run in its subfolders" if more else ""
    console.print(
        f"{top} example patterns and labels.csv in {folder}/{extra} (2θ at 0.561 Å: predict them "
        f"with --wavelength 0.561)",
        highlight=False,
        soft_wrap=True,
    )


@app.command("predict")
@clean_errors
def predict_cmd(
    paths: Annotated[
        list[str], typer.Argument(help="Pattern files, frame files, folders or globs.")
    ],
    model: ModelOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="CSV to write (default: stdout).")
    ] = None,
    wavelength: WavelengthOpt = None,
    x_unit: XUnitOpt = None,
    poni: PoniOpt = None,
    mask: MaskOpt = "none",
    threshold: ThresholdOpt = None,
    guard: GuardOpt = True,
    verify: VerifyOpt = True,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot", help="Folder for a PNG per pattern (and a timeline per frame stack)."
        ),
    ] = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    save_integrated: Annotated[
        Path | None,
        typer.Option(
            "--save-integrated",
            help="Folder for the integrated 1D patterns of frames (never overwrites a file).",
        ),
    ] = None,
    save_mask: Annotated[
        Path | None,
        typer.Option(
            "--save-mask",
            help="With --mask auto: folder for each frame's mask (EDF, "
            "1 = masked, reusable as --mask FILE; never overwrites a file).",
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON object (per-pattern results) "
            "on stdout instead of the CSV and the table (--out FILE.json writes it there).",
        ),
    ] = False,
    force: ForceOpt = False,
) -> None:
    """Call each phase of the model in every pattern: a CSV row per file (or frame) with
    p_<phase>, 0/1 calls, a warning (unexplained peaks, uncertain calls) and an error column,
    then the wavelength, its source and the x unit each pattern was read with.
    An --out ending in .json gets the JSON object of --json instead of the CSV."""
    from ..atomic import write_text
    from ..io.read import expand_inputs, is_frame
    from ..io.writers import json_text, write_csv
    from .outputs import plots_into

    files = expand_inputs(paths, poni is not None)[0]
    options = _reading_options(wavelength, x_unit, poni, mask, files)
    if save_integrated is not None and files and not any(is_frame(f, True) for f in files):
        unused("--save-integrated", "no input is a 2D frame (it saves the integrated frames)")
    if save_mask is not None and mask != "auto":
        raise XrdmtlError("--save-mask saves the masks that --mask auto finds: add --mask auto")
    _check_predict_outputs(files, poni, out, plot, save_integrated, save_mask, model, mask, force)
    predictor = _predictor(model, threshold, guard, verify)
    with plots_into(plot) as plot_dir:
        preds = predictor.predict_files(
            paths,
            options,
            workers=workers,
            scheduler=scheduler,
            plot_dir=plot_dir,
            save_integrated=save_integrated,
            save_mask=save_mask,
        )
    as_text = json_text(_predictions_json(preds, predictor), indent=1, ensure_ascii=False) + "\n"
    json_out = out is not None and out.suffix.lower() == ".json"
    text = write_csv(preds, predictor.phases, None if json_out else out, predictor.verify)
    if json_out and out is not None:
        try:
            write_text(out, as_text)
        except OSError as exc:
            raise OutputError(f"cannot write --out {out}: {exc.strerror or exc}") from None
    failed = [p for p in preds if not p.ok]
    if as_json:
        sys.stdout.write(as_text)
        sys.stdout.flush()
        for p in failed:
            err_console.print(
                f"[red]error:[/red] {_clip(p.error, 10_000)}", highlight=False, soft_wrap=True
            )
        if failed or not preds:
            raise typer.Exit(1)
        return
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    show = console if out is not None else err_console
    warned = sum(1 for p in preds if p.ok and p.warning)
    show.print(_summary_table(preds, predictor.phases, "xrdmtl predict"))
    where = f"; {'JSON' if json_out else 'CSV'}: {out}" if out is not None else ""
    plots = f"; plots: {plot}/" if plot is not None else ""
    show.print(
        f"{len(preds)} pattern(s), {len(failed)} failed, {warned} with warnings{where}{plots}",
        highlight=False,
    )
    for p in failed:
        err_console.print(
            f"[red]error:[/red] {_clip(p.error, 10_000)}", highlight=False, soft_wrap=True
        )
    if failed or not preds:
        raise typer.Exit(1)


@app.command("evaluate")
@clean_errors
def evaluate_cmd(
    labels: LabelsOpt,
    model: ModelOpt = None,
    wavelength: WavelengthOpt = None,
    x_unit: XUnitOpt = None,
    poni: PoniOpt = None,
    mask: MaskOpt = "none",
    threshold: ThresholdOpt = None,
    guard: GuardOpt = True,
    verify: VerifyOpt = True,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of tables.")
    ] = False,
) -> None:
    """Predict the labeled patterns and score the calls: per-phase accuracy, F1 and ROC AUC,
    exact-match accuracy, and the misclassified files."""
    from ..io.writers import json_text
    from ..workflows.evaluate import evaluate_labels
    from .outputs import labeled_files

    options = _reading_options(wavelength, x_unit, poni, mask, labeled_files(labels))
    predictor = _predictor(model, threshold, guard, verify)
    result = evaluate_labels(
        predictor,
        labels,
        options,
        workers=workers,
        scheduler=scheduler,
        note=lambda msg: err_console.print(f"note: {msg}", highlight=False),
    )
    if as_json:
        sys.stdout.write(json_text(result, indent=1) + "\n")
    else:
        _print_evaluation(result, predictor.phases)
    if result["failed"]:
        if not as_json:
            for f in result["failed"]:
                err_console.print(
                    f"[red]error:[/red] {_clip(f['error'], 10_000)}",
                    highlight=False,
                    soft_wrap=True,
                )
        raise typer.Exit(1)


def _print_evaluation(result: dict, phases: list[str]) -> None:
    from rich.table import Table

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    table = Table(title=f"xrdmtl evaluate: {result['n']} labeled pattern(s)")
    for col in ("phase", "positives", "accuracy", "precision", "recall", "F1", "ROC AUC"):
        table.add_column(col, justify="left" if col == "phase" else "right")
    for name in phases:
        m = result["phases"][name]
        table.add_row(
            name,
            str(m["positives"]),
            fmt(m["accuracy"]),
            fmt(m["precision"]),
            fmt(m["recall"]),
            fmt(m["f1"]),
            fmt(m["roc_auc"]),
        )
    console.print(table)
    console.print(f"exact match (all phases right): {fmt(result['exact_match'])}", highlight=False)
    wrong = result["misclassified"]
    if wrong:
        mis = Table(title=f"misclassified: {len(wrong)}")
        for col in ("file", "labels", "calls", *(f"p_{n}" for n in phases)):
            mis.add_column(col, overflow="fold")
        for w in wrong:
            mis.add_row(
                _clip(w["file"], 200),
                ", ".join(w["labels"]) or "-",
                ", ".join(w["calls"]) or "-",
                *(f"{w['probabilities'][n]:.2f}" for n in phases),
            )
        console.print(mis)
    else:
        console.print("no misclassified pattern")


@app.command("audit")
@clean_errors
def audit_cmd(
    labels: LabelsOpt,
    model: ModelOpt = None,
    wavelength: WavelengthOpt = None,
    x_unit: XUnitOpt = None,
    poni: PoniOpt = None,
    mask: MaskOpt = "none",
    no_model: Annotated[
        bool, typer.Option("--no-model", help="Peak evidence only, no model.")
    ] = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Folder for a PNG per flagged pattern.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="CSV to write: one row per label (FILE.json: the --json object)."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of tables.")
    ] = False,
    force: ForceOpt = False,
) -> None:
    """The evidence for and against each label (model probability, peak matches against the phase's
    reflections) with a verdict per label: agrees, uncertain or contradicted; a plot per flagged pattern."""
    from ..io.writers import json_text
    from ..outputs import check_apart
    from ..workflows.audit import audit_labels
    from .outputs import check_out_file, check_plots, inputs_of, labeled_files, plots_into

    options = _reading_options(wavelength, x_unit, poni, mask, labeled_files(labels))
    if no_model and model is not None:
        unused("--model", "--no-model weighs the peak evidence alone")
    inputs = inputs_of(labels=labels, model=model, poni=poni, mask=mask)
    check_apart("--plot", plot, {"--out": out})
    if out is not None:
        check_out_file(out, "--out", inputs, "audit", force)
    check_plots(plot, inputs)
    with plots_into(plot) as plot_dir:
        table = audit_labels(
            labels,
            model,
            options,
            use_model=not no_model,
            plot_dir=plot_dir,
            note=lambda msg: err_console.print(f"note: {msg}", highlight=False),
        )
    doc = json_text(table.to_json(), indent=1) + "\n"
    if out is not None and out.suffix.lower() == ".json":
        from ..atomic import write_text

        write_text(out, doc)
    elif out is not None:
        table.to_csv(out)
    if as_json:
        sys.stdout.write(doc)
    else:
        console.print(table.rich_table())
        for source, acc in table.accuracy().items():
            if not all(math.isfinite(v) for v in acc.values()):
                continue  # no labeled pattern was read: nothing to score
            per_phase = ", ".join(f"{p} {acc[p]:.1%}" for p in table.phases)
            console.print(
                f"{source} calls vs labels as given: exact match {acc['exact_match']:.1%} ({per_phase})",
                highlight=False,
            )
        for r in table.flagged:
            console.print(
                f"[bold red]contradicted[/bold red] {r.file} {r.phase}={r.label}: {r.reason}",
                highlight=False,
                soft_wrap=True,
            )
        console.print(
            f"{len(table.flagged)} contradicted label(s), "
            f"{sum(r.verdict == 'uncertain' for r in table.rows)} uncertain"
            + (f"; CSV: {out}" if out is not None else "")
            + (f"; plots: {plot}/" if table.plots else ""),
            highlight=False,
        )
    for file, err in table.errors.items():
        err_console.print(
            f"[red]error:[/red] {err if file in err else f'{file}: {err}'}",
            highlight=False,
            soft_wrap=True,
        )
    if table.errors:
        raise typer.Exit(1)


@simulate_app.command("frames")
@clean_errors
def simulate_frames_cmd(
    n: Annotated[int, typer.Option("--n", min=1, help="Number of frames.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same files).")] = 0,
    wavelength: Annotated[
        float, typer.Option("--wavelength", min=0.1, max=2.0, help="Wavelength in Å.")
    ] = 0.561,
    plot: Annotated[
        bool, typer.Option("--plot", help="Save frames.png with a few frames.")
    ] = False,
) -> None:
    """Simulate diamond-anvil-cell detector frames (EDF), the .poni geometry, true spot masks,
    labels.csv, and each frame integrated unmasked/ and masked/ (pyFAI text format, own labels.csv)."""
    from ..synthesis.frames import simulate_frames
    from .outputs import simulated_into

    _check_seed(seed)
    with (
        simulated_into(out, "simulate frames") as stage,
        ProgressBar(n, "simulating frames") as bar,
    ):
        simulate_frames(
            stage,
            n,
            seed=seed,
            wavelength=wavelength,
            plot=plot,
            progress=lambda i: bar.update(completed=i),
        )
    console.print(
        f"{n} frames in {out} (labels.csv, unmasked/, masked/, geometry.poni)", highlight=False
    )


@simulate_app.command("patterns")
@clean_errors
def simulate_patterns_cmd(
    n: Annotated[int, typer.Option("--n", min=1, help="Number of patterns.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same files).")] = 0,
    plot: Annotated[
        bool, typer.Option("--plot", help="Save examples.png with reference sticks.")
    ] = False,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="xy: one pyFAI-style file per pattern; h5: one patterns.h5 (large sets).",
        ),
    ] = "xy",
    wavelength: Annotated[
        float | None,
        typer.Option(
            "--wavelength",
            min=0.1,
            max=3.0,
            help="Write 2θ at this wavelength (Å); default each pattern's own.",
        ),
    ] = None,
) -> None:
    """Simulate labeled 1D patterns of the default targets (every distortion, masked and unmasked
    looks) with labels.csv."""
    from ..synthesis.patterns import write_patterns
    from .outputs import simulated_into

    if fmt not in ("xy", "h5"):
        raise typer.BadParameter("--format must be xy or h5")
    _check_seed(seed)
    with (
        simulated_into(out, "simulate patterns") as stage,
        ProgressBar(n, "simulating patterns") as bar,
    ):
        labels = write_patterns(
            stage,
            n,
            seed,
            fmt=fmt,
            wavelength=wavelength,
            plot=plot,
            progress=lambda i: bar.update(completed=i),
        )
    console.print(f"{n} patterns in {out} ({labels.name})", highlight=False)


def _labeled_inputs(
    labels: Path, names: list[str], grid: Any, options: ReadOptions
) -> tuple[Any, Any]:
    """(model input, labels) of the labeled patterns ``train --labels`` tracks; a line per file that
    cannot be read."""
    from ..io.labels import load_labeled
    from ..model.preprocess import model_input

    note = lambda msg: err_console.print(f"note: {msg}", highlight=False)  # noqa: E731
    data, _, failed = load_labeled(labels, names, grid, options, note)
    for line in failed:
        err_console.print(f"[red]error:[/red] {line}", highlight=False, soft_wrap=True)
    return model_input(data.intensity, data.coverage, grid.step), data.labels


def _train_reading_notes(
    labels: Path | None, wavelength: float | None, x_unit: str | None, poni: Path | None, mask: str
) -> None:
    """train reads patterns only for --labels: its reading options do nothing without."""
    given = [
        o
        for o, v in (("--wavelength", wavelength), ("--x-unit", x_unit), ("--poni", poni))
        if v is not None
    ] + (["--mask"] if mask != "none" else [])
    if labels is None and given:
        unused(", ".join(given), "train reads patterns only for --labels (training is synthetic)")


def _print_trained(out: Path, result: Any) -> None:
    """The one line train ends with: where the model is, its size, and its held-out figures."""
    final = result.final
    accs = ", ".join(f"{k[8:]} {v:.1%}" for k, v in final.items() if k.startswith("val_acc_"))
    console.print(
        f"model in {out} ({result.n_parameters:,} parameters, best step {result.best_step}, "
        f"{result.seconds:.0f} s): held-out simulated exact match {final['val_exact']:.1%} ({accs}); "
        f"ECE {result.calibration['ece_before']:.3f} → {result.calibration['ece_after']:.3f}",
        highlight=False,
    )


@app.command("train")
@clean_errors
def train_cmd(
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Model folder to write (model.safetensors, model.json, curves)."
        ),
    ],
    phases: Annotated[
        str,
        typer.Option(
            "--phases", help="Comma-separated library phases to identify (see `xrdmtl phases`)."
        ),
    ] = "bastnaesite,calcite,rhenium",
    cif: Annotated[
        list[Path] | None,
        typer.Option("--cif", help="Extra phase from a .cif/.jcpds file (repeatable)."),
    ] = None,
    arch: Annotated[
        str,
        typer.Option(
            "--arch",
            help="mtl (multi-task, the shipped default model's network), "
            "binary (one CNN per phase) or paper.",
        ),
    ] = "mtl",
    loss: Annotated[
        str | None, typer.Option("--loss", help="ce, weighted_ce, focal, uncertainty or smoothed.")
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels", help="Labeled measured patterns to track during training (not trained on)."
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            "--epochs", min=1, help="Evaluation intervals of --eval-every steps (sets --steps)."
        ),
    ] = None,
    steps: Annotated[
        int | None, typer.Option("--steps", min=1, help="Training steps (batches).")
    ] = None,
    eval_every: Annotated[
        int, typer.Option("--eval-every", min=1, help="Steps between validations.")
    ] = 250,
    val_size: Annotated[
        int,
        typer.Option(
            "--val-size",
            min=16,
            help="Held-out simulated patterns for validation (and calibration).",
        ),
    ] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same model).")] = 0,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the checkpoint in --out.")
    ] = False,
    lattice_range: Annotated[
        tuple[float, float] | None,
        typer.Option(
            "--lattice-range",
            help="Relative lattice scales LO HI every phase's range is widened to "
            "cover (default 0.978 1.022: ±2 %, thermal expansion and compression of a cell run).",
        ),
    ] = None,
    wavelength: WavelengthOpt = None,
    x_unit: XUnitOpt = None,
    poni: PoniOpt = None,
    mask: MaskOpt = "none",
    force: ForceOpt = False,
) -> None:
    """Train a model on synthetic patterns of the phases (no labeled data needed)."""
    from ..model.networks import SHIPPED_MTL_KWARGS
    from ..training.train import TrainConfig, make_synthesizer, train
    from .outputs import check_model_out, inputs_of, labeled_files, write_model

    _check_seed(seed)
    names = _phase_list(phases)
    if epochs is not None and steps is not None:
        contradict("--epochs", "--steps")
    _train_reading_notes(labels, wavelength, x_unit, poni, mask)
    inputs = inputs_of(labels=labels, poni=poni, mask=mask, cif=cif or [])
    check_model_out(out, inputs, force, resume)
    steps = epochs * eval_every if epochs is not None else steps
    config = TrainConfig(  # it checks the settings
        phases=names,
        cif=[str(c) for c in cif or []],
        arch=arch,
        arch_kwargs=dict(SHIPPED_MTL_KWARGS) if arch == "mtl" else {},
        loss=loss or TrainConfig.loss,
        steps=steps or TrainConfig.steps,
        seed=seed,
        eval_every=eval_every,
        val_size=val_size,
        calib_size=val_size,
        synth={"lattice_coverage": list(lattice_range)} if lattice_range else {},
    )
    synth = make_synthesizer(config)
    _note_slow_phases(getattr(synth, "targets", ()))
    extra = None
    if labels is not None:
        options = _reading_options(wavelength, x_unit, poni, mask, labeled_files(labels))
        extra = {
            "labeled": _labeled_inputs(labels, [p.name for p in synth.targets], synth.grid, options)
        }
    result = write_model(
        out,
        resume,
        lambda folder: train(
            config, folder, progress=True, resume=resume, synthesizer=synth, extra_val=extra
        ),
    )
    _print_trained(out, result)
