"""``xrdmtl watch``, ``xrdmtl timeline`` and ``xrdmtl export``: following a run at the beamline."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from ..errors import XrdmtlError
from .app import (
    GuardOpt,
    MaskOpt,
    ModelOpt,
    PoniOpt,
    ThresholdOpt,
    VerifyOpt,
    WavelengthOpt,
    XUnitOpt,
    _predictor,
    _reading_options,
    app,
    clean_errors,
    console,
    err_console,
)
from .outputs import ForceOpt, inputs_of


def _host_port(serve: str) -> tuple[str, int]:
    """``[HOST:]PORT`` → (host, port); localhost unless a host is given."""
    host, _, port = serve.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise XrdmtlError(f"--serve takes [HOST:]PORT, e.g. 8765 or 0.0.0.0:8765, got {serve!r}")
    return host.strip("[]") or "127.0.0.1", number


def _check_watch(
    folder: Path, out: Path, settle: float, poll: float | None, inputs: list[Any]
) -> None:
    """Refuse, with one line, a missing folder, bad timings, or an --out that is one of ``inputs``
    or an existing file that is not a predictions CSV (which a restart continues)."""
    from ..outputs import check_file
    from .outputs import PREDICTIONS_CSV

    if not folder.is_dir():
        raise XrdmtlError(f"{folder}: no such folder to watch")
    if settle < 0 or (poll is not None and poll <= 0):
        raise XrdmtlError("--settle must be ≥ 0 and --poll > 0 seconds")
    check_file(out, "--out", inputs=inputs, ours=PREDICTIONS_CSV)


def _serve(sock: Any, predictor: Any, options: Any, log: Any, folder: Path) -> tuple[Any, Any]:
    """Start the page server on the bound socket; (server, state)."""
    from ..workflows.livepage import PageServer, PatternViews, RunState, make_app, run_meta

    state = RunState(log.header, run_meta(predictor, str(folder)))
    if log.n_rows:  # a resumed run: the page starts with the rows it already has
        state.add(_raw_rows(log.path))
    server = PageServer(make_app(state, PatternViews(predictor, options).view), sock)
    server.start()
    console.print(f"page: {server.url}", highlight=False)
    return server, state


def _raw_rows(path: Path) -> list[list[str]]:
    import csv

    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))[1:]


@app.command("watch")
@clean_errors
def watch_cmd(
    folder: Annotated[Path, typer.Argument(help="Folder the detector or integration writes into.")],
    model: ModelOpt = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="CSV of the run (resumed if it exists).")
    ] = Path("run.csv"),
    wavelength: WavelengthOpt = None,
    x_unit: XUnitOpt = None,
    poni: PoniOpt = None,
    mask: MaskOpt = "none",
    threshold: ThresholdOpt = None,
    guard: GuardOpt = True,
    verify: VerifyOpt = True,
    serve: Annotated[
        str | None,
        typer.Option("--serve", help="Serve the run's live page on [HOST:]PORT (host: 127.0.0.1)."),
    ] = None,
    poll: Annotated[
        float | None,
        typer.Option(
            "--poll",
            help="List the folder every SECONDS instead of file-system events (network file systems).",
        ),
    ] = None,
    settle: Annotated[
        float,
        typer.Option(
            "--settle", help="Seconds a file's size and time must hold before it is read."
        ),
    ] = 0.5,
) -> None:
    """Predict each pattern or frame file as it lands in FOLDER (files already there first, in
    order; a file still being written is waited for) and append its row to the CSV, with the
    columns of predict's CSV. A restart with the same --out resumes: no file is predicted twice.
    Stop with Ctrl-C."""
    from ..inference.watch import WatchReport, WatchSettings, warm_up
    from ..io.runlog import RunLog
    from ..io.writers import csv_header

    options = _reading_options(wavelength, x_unit, poni, mask)
    _check_watch(folder, out, settle, poll, inputs_of(model=model, poni=poni, mask=mask))
    sock = None
    if serve is not None:
        from ..workflows.livepage import bind

        sock = bind(*_host_port(serve))  # before any work: a port in use is one line now
    predictor = _predictor(model, threshold, guard, verify)
    log = RunLog(out, csv_header(predictor.phases, predictor.verify))
    server, state = (None, None) if sock is None else _serve(sock, predictor, options, log, folder)
    warm_up(predictor, options)
    resumed = f" (resuming: {log.n_rows} rows already)" if log.n_rows else ""
    console.print(f"watching {folder}/ → {out}{resumed}; Ctrl-C stops", highlight=False)
    report = WatchReport()
    try:
        how = _watch_until_stopped(
            predictor, folder, log, options, WatchSettings(settle=settle, poll=poll), report, state
        )
    finally:
        if server is not None:
            server.stop()
    bad = f"; {report.failed} file(s) failed (their rows say why)" if report.failed else ""
    gone = f"; {len(report.skipped)} removed before they were read" if report.skipped else ""
    err_console.print(
        f"stopped ({how}): {log.n_rows} rows in {out}, every one complete{bad}{gone}",
        highlight=False,
    )
    if report.failed:
        raise typer.Exit(1)


def _watch_until_stopped(
    predictor: Any,
    folder: Path,
    log: Any,
    options: Any,
    settings: Any,
    report: Any,
    state: Any,
) -> str:
    """Run the watch, each batch's rows printed (and sent to the page); what stopped it."""
    from ..inference.watch import watch

    def shown(preds: list, rows: list[list[str]]) -> None:
        if state is not None:
            state.add(rows)
        for p in preds:
            note = f"[red]{escape(p.error)}[/red]" if p.error else escape(", ".join(p.found))
            console.print(f"{escape(p.file)}: {note or 'nothing called'}", soft_wrap=True)

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())  # a service manager's stop
    try:
        watch(predictor, folder, log, options, settings, stop, on_rows=shown, report=report)
    except KeyboardInterrupt:
        return "Ctrl-C"
    finally:
        signal.signal(signal.SIGTERM, previous)
    return "SIGTERM"


@app.command("timeline")
@clean_errors
def timeline_cmd(
    csv_file: Annotated[Path, typer.Argument(metavar="CSV", help="A run's (or predict's) CSV.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="FILE.png or FILE.html (default: the CSV's name, .png)."),
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Draw a run's timeline after the run: each phase's probability per frame (and each refined
    cell where the CSV has them), as a PNG or as the live page's HTML with the data inside."""
    from ..io.runlog import read_run
    from ..outputs import check_file
    from ..workflows.livepage import timeline_html, timeline_png

    out = out or csv_file.with_suffix(".png")
    if out.suffix.lower() not in (".png", ".html", ".htm"):
        raise XrdmtlError(f"--out {out}: give a .png or .html file")
    check_file(out, "--out", inputs=[("CSV", csv_file)], force=force)
    table = read_run(csv_file)
    if not table.files:
        raise XrdmtlError(f"{csv_file} has no rows to draw")
    if out.suffix.lower() == ".png":
        timeline_png(table, out)
    else:
        timeline_html(table, out, csv_file.name)
    console.print(f"timeline of {len(table.files)} rows: {out}", highlight=False)


def _example_inputs(model: Any) -> Any:
    """Model inputs of the shipped example patterns (2θ at 0.561 Å)."""
    import numpy as np

    from ..io.examples import examples_dir
    from ..io.read import ReadOptions, read_files
    from ..model.preprocess import model_input

    files = sorted(str(p) for p in examples_dir().rglob("*.npy"))
    patterns = read_files(files, ReadOptions(wavelength=0.561))
    grids = [p.on_grid(model.grid) for p in patterns if not isinstance(p, Exception)]
    intensity = np.stack([g[0] for g in grids])
    coverage = np.stack([g[1] for g in grids])
    return model_input(intensity, coverage, model.grid.step)


@app.command("export")
@clean_errors
def export_cmd(
    onnx: Annotated[Path, typer.Option("--onnx", help="ONNX file to write.")],
    model: ModelOpt = None,
    force: ForceOpt = False,
) -> None:
    """Write the model as one ONNX graph for control systems: model input (batch, 4, n) on the
    model's Q grid in, calibrated probabilities out, with a stored adapter's vote blended in the same
    graph. Checked with onnxruntime against the model on the shipped examples."""
    from ..model.export import export_onnx, onnx_difference
    from ..model.files import default_model_dir, load_model
    from ..outputs import check_file

    check_file(onnx, "--onnx", inputs=inputs_of(model=model), force=force)
    loaded = load_model(model or default_model_dir(), device="cpu")
    with console.status("exporting to ONNX"):
        export_onnx(loaded, onnx)
    x = _example_inputs(loaded)
    diff = onnx_difference(onnx, loaded, x)
    adapter = " and its adapter (in the same graph)" if loaded.adapter is not None else ""
    console.print(
        f"wrote {onnx}: the network{adapter}; onnxruntime vs the model on {len(x)} shipped "
        f"examples: max |Δp| = {diff:.1e}",
        highlight=False,
        soft_wrap=True,
    )
    if not diff <= 1e-5:
        raise XrdmtlError(f"the ONNX graph differs from the model by {diff:.1e} (> 1e-5)")
