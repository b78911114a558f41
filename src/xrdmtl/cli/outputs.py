"""The output rule (:mod:`xrdmtl.outputs`) as each command applies it: what the command writes, how
an earlier output of it is recognised, and ``--force``. See docs/outputs.md."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import typer

from ..errors import OutputError, XrdmtlError
from ..outputs import (
    Input,
    check_file,
    check_folder,
    csv_starts_with,
    mark,
    marked,
    staged_folder,
)

T = TypeVar("T")

ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Replace an existing --out file this command did not write, or a model folder "
        "(the whole folder). Never an input, never a folder holding your own files.",
    ),
]

PREDICTIONS_CSV = csv_starts_with("file,p_")
AUDIT_CSV = csv_starts_with("file,phase,label,")
PLOTS = marked("plots")
SIMULATED = marked("simulate patterns", "simulate frames")
_MODEL_FILES = {
    "model.safetensors", "model.json", "adapter.safetensors", "metrics.json", "metrics.csv",
    "curves.png", "checkpoint", "audit.csv", "adaptation.json",
}  # fmt: skip


def json_with(*keys: str) -> Callable[[Path], bool]:
    """A recogniser of a JSON object holding ``keys`` (what a command's --out FILE.json holds)."""

    def recognise(path: Path) -> bool:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(doc, dict) and set(keys) <= set(doc)

    return recognise


def is_model_folder(folder: Path) -> bool:
    """A folder train or finetune wrote: its marker says so, or (an older model) its model.json is
    an xrdmtl model and it holds nothing but a model's files."""
    if marked("model")(folder):
        return True
    try:
        meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    names = {p.name for p in folder.iterdir()}
    return isinstance(meta, dict) and meta.get("format") == "xrdmtl-model" and names <= _MODEL_FILES


def is_experiment(folder: Path) -> bool:
    """A folder ``xrdmtl experiment`` wrote (its results, or its two caches), which it continues."""
    if all((folder / c / ".gitignore").is_file() for c in ("data", "runs")):
        return True
    try:
        doc = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and {"meta", "settings"} <= set(doc)


def labeled_files(labels: Path | None) -> list[str]:
    """The pattern files a labels CSV names (none when there is no labels file or it is unreadable:
    reading it later says why)."""
    if labels is None or not labels.is_file():
        return []
    from ..io.labels import read_labels

    try:
        files, _ = read_labels(labels, [])
    except XrdmtlError:
        return []
    return [f.partition("::")[0] for f in files]


def inputs_of(
    *,
    patterns: Sequence[str] = (),
    labels: Path | None = None,
    model: str | None | Literal[False] = False,
    poni: Path | None = None,
    mask: str = "none",
    cif: Sequence[Path] = (),
) -> list[Input]:
    """Everything a run reads, each named for the messages: the patterns (and those the labels
    list), the labels, the model folder and its files (``model=None``: the shipped one; ``False``:
    no model), the geometry, a mask file, structure files."""
    from ..model.files import model_files

    out: list[Input] = [("pattern", f) for f in [*patterns, *labeled_files(labels)]]
    out += [(option, p) for option, p in (("--labels", labels), ("--poni", poni)) if p is not None]
    out += [("--cif", c) for c in cif]
    if mask not in ("none", "auto"):
        out.append(("--mask", mask))
    if model is not False:
        folder = model_dir(model)
        out += [("--model", folder), *(("--model", f) for f in model_files(folder))]
    return out


def model_dir(model: str | None) -> Path:
    """The folder of ``--model`` (or of its .safetensors file; None: the shipped model)."""
    from ..model.files import default_model_dir

    if model is None:
        return default_model_dir()
    return Path(model).parent if Path(model).suffix == ".safetensors" else Path(model)


def check_out_file(out: Path, option: str, inputs: Sequence[Input], kind: str, force: bool) -> None:
    """An output file of ``kind`` (predictions, audit): the rule of :func:`xrdmtl.outputs.check_file`."""
    as_json = out.suffix.lower() == ".json"
    ours = {
        "predictions": json_with("phases", "predictions") if as_json else PREDICTIONS_CSV,
        "audit": json_with("labels", "phases", "flagged") if as_json else AUDIT_CSV,
    }[kind]
    check_file(out, option, inputs=inputs, ours=ours, force=force)


def check_plots(plot: Path | None, inputs: Sequence[Input]) -> None:
    """A ``--plot`` folder: new, empty, or one of xrdmtl's plot folders (replaced whole)."""
    if plot is not None:
        check_folder(plot, "--plot", inputs=inputs, ours=PLOTS)


@contextmanager
def plots_into(plot: Path | None) -> Iterator[Path | None]:
    """Where the plots are drawn: a staged folder swapped in for ``plot`` at the end (or None)."""
    if plot is None:
        yield None
        return
    with staged_folder(plot, "plots") as stage:
        yield stage


def check_model_out(out: Path, inputs: Sequence[Input], force: bool, resume: bool = False) -> None:
    """A model ``--out`` folder (train, finetune): new or empty; a model or checkpoint xrdmtl
    wrote only with ``--force`` (replaced whole) or, for train, ``--resume``; never an input or a
    folder holding one, never a folder of the user's own files, never a file."""
    if resume:
        if not (out / "checkpoint" / "state.json").is_file():
            raise OutputError(f"--resume: {out} holds no training checkpoint to continue")
        return
    check_folder(out, "--out", inputs=inputs, ours=is_model_folder, precious=True, force=force)


def write_model(out: Path, resume: bool, work: Callable[[Path], T]) -> T:
    """Run ``work(folder)`` to write a model into a staged folder swapped in for ``out`` at the end
    (``resume``: in ``out`` itself, whose checkpoint it continues). On Ctrl-C a fresh training
    keeps its checkpoint in ``out`` (where ``out`` held nothing) and says what is left."""
    if resume:
        try:
            return work(out)
        except KeyboardInterrupt:
            raise KeyboardInterrupt(_left_after_interrupt(out, old_kept=False)) from None
        finally:
            mark(out, "model")  # the folder as xrdmtl left it, checkpoint and all
    existed = out.is_dir() and any(out.iterdir())

    def keep_checkpoint(stage: Path) -> None:
        if not existed and (stage / "checkpoint" / "state.json").is_file():
            out.mkdir(parents=True, exist_ok=True)
            shutil.move(str(stage / "checkpoint"), str(out / "checkpoint"))
            mark(out, "model")

    try:
        with staged_folder(out, "model", on_interrupt=keep_checkpoint) as stage:
            return work(stage)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_left_after_interrupt(out, old_kept=existed)) from None


def _left_after_interrupt(out: Path, old_kept: bool) -> str:
    """What an interrupted training left in ``out``, in words (``old_kept``: an old folder there,
    left as it was)."""
    state = out / "checkpoint" / "state.json"
    if old_kept:
        return f"nothing written ({out} unchanged)"
    if state.is_file():
        try:
            step = json.loads(state.read_text(encoding="utf-8")).get("step", "?")
        except (OSError, ValueError):
            step = "?"
        return (
            f"no new model written; the checkpoint of step {step} is in {out / 'checkpoint'} "
            "(the same command with --resume continues it)"
        )
    return "nothing written"


def rewrite_json(path: Path, doc: dict) -> None:
    """Write ``doc`` to ``path`` atomically, as the workflows write their JSON."""
    from ..atomic import write_text

    write_text(path, json.dumps(doc, indent=1) + "\n")


@contextmanager
def simulated_into(out: Path, kind: str) -> Iterator[Path]:
    """Check ``out`` for ``simulate`` (new, empty, or a folder simulate wrote) and yield the staged
    folder that replaces it whole at the end (no old frame is left without its labels)."""
    check_folder(out, "--out", ours=SIMULATED)
    with staged_folder(out, kind) as stage:
        yield stage
