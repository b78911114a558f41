"""``xrdmtl finetune`` and ``xrdmtl crossval``: adapting a model to the user's own labels."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import XrdmtlError
from .app import (
    LabelsOpt,
    MaskOpt,
    ModelOpt,
    PoniOpt,
    WavelengthOpt,
    XUnitOpt,
    _check_seed,
    _reading_options,
    app,
    clean_errors,
    console,
    err_console,
)
from .notes import contradict, unused
from .outputs import ForceOpt, labeled_files

StepsOpt = Annotated[
    int,
    typer.Option(
        "--steps",
        min=0,
        help="Also fine-tune the network for this many steps (0: keep it as trained).",
    ),
]
LayersOpt = Annotated[
    str | None,
    typer.Option(
        "--layers", help="Network layers fine-tuned with --steps: heads (default) or all."
    ),
]
ContradictedOpt = Annotated[
    str | None,
    typer.Option(
        "--contradicted",
        help="Labels the physics audit contradicts: auto (default: as leave-one-out scores "
        "best), drop (their patterns leave the vote), drop-labels (only those labels) or keep.",
    ),
]

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..io.read import ReadOptions
    from ..training.adapt import AdaptConfig
    from ..workflows.adapt import AdaptReport, NetworkTuning


def _note(msg: str) -> None:
    err_console.print(f"note: {msg}", highlight=False, soft_wrap=True)


def _policy(contradicted: str | None, drop_contradicted: bool, audit: bool) -> str:
    """The policy for contradicted labels (AdaptConfig checks its name); contradicting or idle
    options said so."""
    if drop_contradicted and contradicted not in (None, "drop"):
        contradict("--drop-contradicted", f"--contradicted {contradicted}")
    policy = "drop" if drop_contradicted else contradicted or "auto"
    if policy.startswith("drop") and not audit:
        raise XrdmtlError("dropping contradicted labels needs the audit: leave out --no-audit")
    if contradicted is not None and not audit:
        unused("--contradicted", "with --no-audit no label is found contradicted")
    return policy


def _tuning(steps: int, layers: str | None, seed: int, adapt_lattice: bool) -> NetworkTuning:
    """The network fine-tuning; --layers and --adapt-lattice without --steps said to do nothing."""
    from ..workflows.adapt import NetworkTuning

    if steps == 0:
        for option, given in (("--layers", layers is not None), ("--adapt-lattice", adapt_lattice)):
            if given:
                unused(option, "it shapes the network fine-tuning, which needs --steps N")
    return NetworkTuning(
        steps=steps, layers=layers or "heads", seed=seed, adapt_lattice=adapt_lattice
    )


def _earlier_references(model: str | None) -> int:
    """How many labeled references the model already holds (an adapted model's adapter), 0 if none."""
    from ..model.files import read_meta
    from .outputs import model_dir

    adapter = read_meta(model_dir(model)).get("adapter")
    return int(adapter.get("n_references", 0)) if isinstance(adapter, dict) else 0


def _adapt(
    labels: Path,
    folder: Path,
    out: Path,
    model: str | None,
    options: ReadOptions,
    config: AdaptConfig,
    tuning: NetworkTuning,
    audit: bool,
    unlabeled: Sequence[str],
) -> AdaptReport:
    """Adapt into ``folder`` (staged: it becomes ``out``), the report naming ``out``. An adapted
    model fine-tuned again starts from its network: its earlier references are replaced, with a note."""
    import dataclasses

    from ..workflows.adapt import adapt_to_labels
    from .outputs import rewrite_json

    earlier = _earlier_references(model)
    if earlier:
        _note(
            f"the model's {earlier} earlier labeled reference(s) are replaced by the patterns of "
            f"{labels} (fine-tuning starts from its network; give every label in one labels file "
            "to keep them all)"
        )
    report = adapt_to_labels(
        labels, folder, model, options, config=config, tuning=tuning, audit=audit,
        unlabeled=unlabeled, note=_note,
    )  # fmt: skip
    report = dataclasses.replace(report, out=out)
    rewrite_json(folder / "adaptation.json", report.to_dict())
    return report


def _choice_lines(report: AdaptReport) -> list[str]:
    """What finetune chose and why, the estimate to expect, and what --contradicted keep would do."""
    fit = report.adapted.fit
    chosen, null = fit.chosen, fit.network
    tuned = ", network fine-tuned" if report.adapted.network_tuned else ""
    lines = [
        f"adapted model in {report.out} ({report.seconds:.0f} s, {len(report.files)} labeled "
        f"patterns): {fit.regime.describe()}",
    ]
    if fit.overruled is not None:
        nested = "" if fit.overruled_by is None else f"{fit.overruled_by.exact:.1%}, "
        lines.append(
            f"kept the {null.describe()}: leave-one-out preferred {fit.overruled.describe()} "
            f"({fit.overruled.exact:.1%}), but repeated without each labeled pattern that choice "
            f"scored {nested}below the network ({null.exact:.1%})"
        )
    elif chosen.kind == "network" and not report.adapted.network_tuned:
        rivals = [c for c in fit.candidates if c is not null]
        best = min(rivals, key=lambda c: c.brier) if rivals else None
        why = (
            f" (best other: {best.describe()}, leave-one-out {best.exact:.1%}, Brier {best.brier:.3f})"
            if best
            else ""
        )
        lines.append(
            f"kept the {null.describe()}: nothing beat it clearly on your labels{why}; "
            f"leave-one-out {null.exact:.1%}, Brier {null.brier:.3f}"
        )
    else:
        lines.append(
            f"chosen: {chosen.describe()}{tuned}: leave-one-out {chosen.exact:.1%}, Brier "
            f"{chosen.brier:.3f} ({null.describe()} {null.exact:.1%}, Brier {null.brier:.3f})"
        )
    if fit.estimate is not None:
        lines.append(f"expected exact match on new patterns of this run: {fit.estimate.describe()}")
    if report.flagged and chosen.kind == "vote" and fit.keep_would is not None:
        keep = fit.keep_would
        lines.append(
            f"with --contradicted keep the best vote would score leave-one-out {keep.exact:.1%}, "
            f"Brier {keep.brier:.3f} ({keep.describe()})"
        )
    return lines


@app.command("finetune")
@clean_errors
def finetune_cmd(
    labels: LabelsOpt,
    out: Annotated[Path, typer.Option("--out", help="Folder for the adapted model.")],
    model: ModelOpt = None,
    wavelength: WavelengthOpt = None,
    x_unit: XUnitOpt = None,
    poni: PoniOpt = None,
    mask: MaskOpt = "none",
    steps: StepsOpt = 0,
    layers: LayersOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (network fine-tuning).")] = 0,
    contradicted: ContradictedOpt = None,
    audit: Annotated[
        bool, typer.Option("--audit/--no-audit", help="Audit the labels on the physics first.")
    ] = True,
    drop_contradicted: Annotated[
        bool, typer.Option("--drop-contradicted", help="Same as --contradicted drop.")
    ] = False,
    adapt_lattice: Annotated[
        bool,
        typer.Option(
            "--adapt-lattice/--no-adapt-lattice",
            help="With --steps: draw the synthetic patterns' lattice around the scale fitted to the labels.",
        ),
    ] = False,
    unlabeled: Annotated[
        list[str] | None,
        typer.Option(
            "--unlabeled",
            help="Unlabeled patterns of the same run (files, folders, globs; repeatable): "
            "those called confidently join the references.",
        ),
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Adapt a model to your labeled patterns, so the rest of your run is labeled the way you label.

    Audits the labels on the physics (OUT/audit.csv lists those the patterns contradict), then
    chooses by leave-one-out over your labels how much a vote of your most similar labeled patterns
    weighs against the network, and writes a model folder that predict, evaluate and audit use as
    any other. OUT/adaptation.json has every candidate's leave-one-out score."""
    from ..training.adapt import AdaptConfig
    from .outputs import check_model_out, inputs_of, write_model

    options = _reading_options(wavelength, x_unit, poni, mask, labeled_files(labels))
    _check_seed(seed)
    config = AdaptConfig(contradicted=_policy(contradicted, drop_contradicted, audit))
    tuning = _tuning(steps, layers, seed, adapt_lattice)
    check_model_out(out, inputs_of(labels=labels, model=model, poni=poni, mask=mask), force)
    report = write_model(
        out, False, lambda folder: _adapt(labels, folder, out, model, options, config, tuning, audit, unlabeled or ())
    )  # fmt: skip
    for line in report.skipped:
        err_console.print(f"skipped: {line}", highlight=False, soft_wrap=True)
    if audit:
        said = [f"{Path(c.split(': ')[0]).name}: {c.split(': ')[1]}" for c in report.contradicted]
        console.print(
            f"label audit: {len(report.contradicted)} label(s) contradicted by the patterns "
            f"({', '.join(said) or 'none'}); table in {out / 'audit.csv'}",
            highlight=False,
            soft_wrap=True,
        )
    for line in _choice_lines(report):
        console.print(line, highlight=False, soft_wrap=True)
    if unlabeled:
        console.print(
            f"unlabeled patterns taken as references (confident calls): {report.adapted.n_pseudo}",
            highlight=False,
        )
    for what, left in (
        ("left out of the vote (contradicted)", report.left_out),
        (
            "labels left out of the vote (contradicted; their patterns vote on the other phases)",
            report.labels_left_out,
        ),
    ):
        if left:
            console.print(
                f"{what}: " + ", ".join(Path(f).name for f in left), highlight=False, soft_wrap=True
            )
    if report.skipped:
        raise typer.Exit(1)


@app.command("crossval")
@clean_errors
def crossval_cmd(
    labels: LabelsOpt,
    model: ModelOpt = None,
    wavelength: WavelengthOpt = None,
    x_unit: XUnitOpt = None,
    poni: PoniOpt = None,
    mask: MaskOpt = "none",
    ns: Annotated[
        str | None,
        typer.Option(
            "--n",
            help="Comma-separated numbers of labeled patterns for the leave-k-out curve ('' for "
            "none; default 5,10,20, those the labels allow).",
        ),
    ] = None,
    splits: Annotated[
        int | None,
        typer.Option("--splits", min=1, help="Random stratified splits per N (default 5)."),
    ] = None,
    loo: Annotated[
        bool, typer.Option("--loo/--no-loo", help="Leave-one-out over all labeled patterns.")
    ] = True,
    steps: StepsOpt = 0,
    layers: LayersOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the splits.")] = 0,
    contradicted: ContradictedOpt = None,
    drop_contradicted: Annotated[
        bool, typer.Option("--drop-contradicted", help="Same as --contradicted drop.")
    ] = False,
    transductive: Annotated[
        bool,
        typer.Option(
            "--transductive",
            help="Also give the held-out patterns as unlabeled (finetune --unlabeled).",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of the table.")
    ] = False,
) -> None:
    """Does adapting to your labels beat the trivial baseline, on your own data? Cross-validated.

    Holds out patterns, adapts to the others exactly as finetune does, and scores the held-out ones
    next to the model before adaptation and a nearest-neighbour vote over the same labels;
    leave-one-out and, for the curve, N labeled patterns per stratified split. Every figure is
    also given on the held-out patterns whose labels the physics audit does not contradict."""
    from ..training.adapt import AdaptConfig
    from ..workflows.crossval import CrossvalPlan, crossvalidate_labels, format_table

    options = _reading_options(wavelength, x_unit, poni, mask, labeled_files(labels))
    _check_seed(seed)
    try:
        counts = tuple(
            int(n) for n in (ns if ns is not None else "5,10,20").split(",") if n.strip()
        )
    except ValueError as exc:
        raise XrdmtlError(f"--n must be comma-separated integers, got {ns!r}") from exc
    if not loo and not counts:
        raise XrdmtlError("nothing to do: give --n or leave --loo on")
    if splits is not None and not counts:
        unused("--splits", "it sets the draws of the leave-k-out curve, which --n '' turns off")
    config = AdaptConfig(contradicted=_policy(contradicted, drop_contradicted, True))
    try:
        result = crossvalidate_labels(
            labels, model, options, config=config,
            plan=CrossvalPlan(counts, splits or 5, seed, loo, transductive, default_ns=ns is None), tuning=_tuning(steps, layers, seed, False),
            note=_note,
        )  # fmt: skip
    except (
        ValueError
    ) as exc:  # an N the labels cannot split (too few patterns): one line, not a traceback
        if not str(exc).startswith("N must lie"):
            raise
        raise XrdmtlError(f"--n {ns}: {exc} (for the patterns these labels hold)") from None
    if as_json:
        from ..io.writers import json_text

        print(json_text(result.to_dict()))
        return
    console.print(format_table({Path(labels).name: result}), highlight=False, soft_wrap=True)
    if result.flagged:
        console.print(
            f"labels the audit contradicts ({len(result.flagged)} pattern(s)): "
            + ", ".join(Path(f).name for f in result.flagged),
            highlight=False,
            soft_wrap=True,
        )
