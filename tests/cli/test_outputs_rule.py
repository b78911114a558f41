"""One output rule for every command (issue 27, docs/outputs.md): an input is never an output; a file
the command did not write is replaced only with --force; a folder holding the user's files never;
a model folder only with --force, and then whole; refusals are one line, before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clitools import WAVELENGTH, digest, error_lines, invoke
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from toymodels import toy_model

from xrdmtl.outputs import MARKER

SCAN = "hdac_unmasked_xy_n_2.npy"


def _refused(res, *words: str) -> str:
    """Exit code 2, exactly one ``error:`` line holding every word, no traceback."""
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = error_lines(res)
    assert len(lines) == 1, res.output
    for w in words:
        assert w.lower() in lines[0].lower(), lines[0]
    return lines[0]


def _tree(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (hidden ones too) → its checksum."""
    return {str(p.relative_to(folder)): digest(p) for p in folder.rglob("*") if p.is_file()}


def test_audit_out_onto_a_pattern_the_labels_list_is_refused_even_with_force(
    examples: Path,
) -> None:
    target = examples / "hdac_masked_xy_bc_10.npy"  # listed in labels.csv
    before = digest(target)
    for force in ([], ["--force"]):
        res = invoke(
            "audit", "--labels", examples / "labels.csv", "--no-model", "--wavelength",
            WAVELENGTH, "--out", target, *force,
        )  # fmt: skip
        _refused(res, "--out", "input", "pattern")
        assert digest(target) == before


def test_predict_out_replaces_its_own_csv_but_no_other_file_without_force(
    examples: Path, tmp_path: Path
) -> None:
    scan = examples / SCAN
    notes = tmp_path / "notes.csv"
    notes.write_text("file,comment\nrun 7,keep me\n")
    args = ("predict", scan, "--wavelength", WAVELENGTH, "--workers", "1", "--out")
    _refused(invoke(*args, notes), "--out", "--force")
    assert notes.read_text() == "file,comment\nrun 7,keep me\n"
    res = invoke(*args, notes, "--force")
    assert res.exit_code == 0, res.output
    assert notes.read_text().startswith("file,p_bastnaesite")
    again = invoke(*args, notes)  # the predictions CSV it wrote: replaced without --force
    assert again.exit_code == 0, again.output


def test_a_json_out_gets_json(examples: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds.json"
    res = invoke(
        "predict", examples / SCAN, "-w", WAVELENGTH, "--workers", "1", "--json", "--out", out
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["n"] == 1 and doc["predictions"][0]["file"].endswith(SCAN)
    assert json.loads(res.stdout) == doc
    audit = tmp_path / "audit.json"
    res = invoke("audit", "--labels", examples / "labels.csv", "--no-model", "-w", WAVELENGTH,
                 "--out", audit)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert {"labels", "phases", "flagged"} <= set(json.loads(audit.read_text()))


def _old_model(folder: Path) -> Path:
    """A model folder as train leaves it: weights, metadata and a checkpoint."""
    toy_model(folder)
    (folder / "checkpoint").mkdir()
    (folder / "checkpoint" / "state.json").write_text('{"step": 3}')
    return folder


def test_train_and_finetune_never_replace_a_model_without_force(
    examples: Path, tmp_path: Path
) -> None:
    model = _old_model(tmp_path / "model")
    before = _tree(model)
    res = invoke("train", "--out", model, "--steps", "1")
    _refused(res, "already holds a model", "--force")
    base = toy_model(tmp_path / "base")
    res = invoke("finetune", "--labels", examples / "labels.csv", "--model", base, "-w", WAVELENGTH,
                 "--out", model)  # fmt: skip
    _refused(res, "already holds a model")
    assert _tree(model) == before


def test_finetune_force_replaces_the_whole_model_folder(examples: Path, tmp_path: Path) -> None:
    """No old checkpoint is left beside the new weights; audit.csv and adaptation.json name --out."""
    model = _old_model(tmp_path / "model")
    base = toy_model(tmp_path / "base")
    res = invoke("finetune", "--labels", examples / "labels.csv", "--model", base, "-w", WAVELENGTH,
                 "--out", model, "--force")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert not (model / "checkpoint").exists()
    assert {"model.json", "adapter.safetensors", "adaptation.json", MARKER} <= {
        p.name for p in model.iterdir()
    }
    assert json.loads((model / "adaptation.json").read_text())["model"] == str(model)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
    again = invoke("finetune", "--labels", examples / "labels.csv", "--model", model, "-w",
                   WAVELENGTH, "--out", tmp_path / "again")  # fmt: skip
    assert again.exit_code == 0, again.output
    notes = [line for line in again.stderr.splitlines() if "earlier labeled reference" in line]
    assert len(notes) == 1 and "replaced" in notes[0], again.stderr


def test_a_model_out_that_holds_an_input_or_is_a_file_is_refused(
    examples: Path, tmp_path: Path
) -> None:
    _refused(invoke("train", "--out", examples, "--labels", examples / "labels.csv"), "input")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for cmd in (["train"], ["simulate", "patterns", "--n", "1"], ["simulate", "frames", "--n", "1"],
                ["experiment", "--toy"]):  # fmt: skip
        _refused(invoke(*cmd, "--out", blocker), "--out", "not a folder")
        _refused(invoke(*cmd, "--out", "/proc/xrdmtl-test/out"), "--out", "cannot write")
    assert blocker.read_text() == "x"


def test_simulate_replaces_its_own_folder_whole_and_refuses_the_users(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    assert invoke("simulate", "patterns", "--n", "3", "--out", out).exit_code == 0
    assert invoke("simulate", "patterns", "--n", "2", "--out", out, "--seed", "1").exit_code == 0
    assert sorted(p.name for p in out.glob("*.xy")) == ["synth_0.xy", "synth_1.xy"]  # no stale file
    labels = out / "labels.csv"
    text = labels.read_text()  # the user relabels one pattern: the same size, at once
    flip = text.index("\n", text.index("\n") + 1) - 1
    labels.write_text(text[:flip] + "10"[int(text[flip])] + text[flip + 1 :])
    before = _tree(out)
    res = invoke("simulate", "patterns", "--n", "2", "--out", out)
    assert res.exit_code == 2 and "labels.csv" in error_lines(res)[0], res.output
    assert _tree(out) == before


def test_ctrl_c_during_train_keeps_the_checkpoint_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import xrdmtl.training.train as training

    def interrupted(config, out, **kw):  # noqa: ANN001, ANN003
        (Path(out) / "checkpoint").mkdir(parents=True)
        (Path(out) / "checkpoint" / "state.json").write_text('{"step": 7}')
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", interrupted)
    out = tmp_path / "new"
    res = invoke("train", "--out", out, "--steps", "10")
    assert res.exit_code == 130, res.output
    assert "checkpoint of step 7" in res.stderr and "--resume" in res.stderr
    assert (out / "checkpoint" / "state.json").is_file() and not (out / "model.json").exists()
    old = _old_model(tmp_path / "old")
    before = _tree(old)
    res = invoke("train", "--out", old, "--steps", "10", "--force")
    assert res.exit_code == 130 and "unchanged" in res.stderr, res.output
    assert _tree(old) == before


FOLDER_COMMANDS = {
    "simulate": lambda out, ex: ["simulate", "patterns", "--n", "1", "--out", out],
    "train": lambda out, ex: ["train", "--out", out, "--steps", "1"],
    "finetune": lambda out, ex: [
        "finetune",
        "--labels",
        ex / "labels.csv",
        "-w",
        WAVELENGTH,
        "--out",
        out,
    ],  # fmt: skip
    "experiment": lambda out, ex: ["experiment", "--toy", "--out", out],
    "predict --plot": lambda out, ex: ["predict", ex / SCAN, "-w", WAVELENGTH, "--plot", out],
    "audit --plot": lambda out, ex: [
        "audit",
        "--labels",
        ex / "labels.csv",
        "--no-model",
        "-w",
        WAVELENGTH,
        "--plot",
        out,
    ],  # fmt: skip
}
HAVE_FORCE = {"train", "finetune", "predict --plot", "audit --plot"}
FILE_COMMANDS = {
    "predict": lambda out, ex: [
        "predict",
        ex / SCAN,
        "-w",
        WAVELENGTH,
        "--workers",
        "1",
        "--out",
        out,
    ],
    "audit": lambda out, ex: [
        "audit",
        "--labels",
        ex / "labels.csv",
        "--no-model",
        "-w",
        WAVELENGTH,
        "--out",
        out,
    ],  # fmt: skip
}
OURS = ("file,p_", "file,phase,label,", "{")  # what the commands recognise as their own


@pytest.fixture(scope="module")
def shared_examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import shutil
    from importlib import resources

    dst = tmp_path_factory.mktemp("ex") / "examples"
    shutil.copytree(Path(str(resources.files("xrdmtl") / "data" / "examples")), dst)
    return dst


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    command=st.sampled_from(sorted(FOLDER_COMMANDS)),
    name=st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
    content=st.binary(max_size=200),
    force=st.booleans(),
)
def test_no_command_touches_a_folder_of_the_users_files(
    shared_examples: Path, tmp_path_factory: pytest.TempPathFactory, command: str, name: str,
    content: bytes, force: bool,
) -> None:  # fmt: skip
    """Whatever the user's file is called and holds, an output folder holding it is refused, with
    or without --force, and the file keeps its bytes."""
    out = tmp_path_factory.mktemp("out")
    (out / name).write_bytes(content)
    with_force = ["--force"] if force and command in HAVE_FORCE else []
    res = invoke(*FOLDER_COMMANDS[command](out, shared_examples), *with_force)
    assert res.exit_code == 2 and len(error_lines(res)) == 1, res.output
    assert [p.name for p in out.iterdir()] == [name] and (out / name).read_bytes() == content


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(command=st.sampled_from(sorted(FILE_COMMANDS)), content=st.binary(max_size=300))
def test_no_command_replaces_a_file_it_did_not_write_without_force(
    shared_examples: Path, tmp_path_factory: pytest.TempPathFactory, command: str, content: bytes
) -> None:
    if content.lstrip(b"\xef\xbb\xbf").startswith(tuple(o.encode() for o in OURS)):
        return  # a predictions or audit CSV (or JSON) is the commands' own: replacing it is fine
    out = tmp_path_factory.mktemp("out") / "out.csv"
    out.write_bytes(content)
    res = invoke(*FILE_COMMANDS[command](out, shared_examples))
    assert res.exit_code == 2 and len(error_lines(res)) == 1, res.output
    assert out.read_bytes() == content


INPUTS = {"predict": [SCAN], "audit": ["labels.csv", "hdac_masked_xy_bc_10.npy"]}


@pytest.mark.parametrize("command", sorted(FILE_COMMANDS))
def test_an_input_is_never_an_output_even_with_force(shared_examples: Path, command: str) -> None:
    for name in INPUTS[command]:
        target = shared_examples / name
        before = digest(target)
        res = invoke(*FILE_COMMANDS[command](target, shared_examples), "--force")
        _refused(res, "input")
        assert digest(target) == before


def test_an_output_inside_the_plot_folder_is_refused(examples: Path, tmp_path: Path) -> None:
    """The plot folder is swapped in whole: a CSV or saved patterns inside it would be lost."""
    plots = tmp_path / "plots"
    for option in ("--out", "--save-integrated"):
        res = invoke("predict", examples / SCAN, "-w", WAVELENGTH, "--plot", plots, option,
                     plots / "x.csv")  # fmt: skip
        _refused(res, "--plot", option, "overlap")
    assert not plots.exists()


def test_an_interrupted_then_resumed_training_folder_stays_xrdmtls_own(tmp_path: Path) -> None:
    """The checkpoint an interruption leaves is kept in --out; --resume continues there, and the
    folder stays one xrdmtl wrote (so --force may replace it later)."""
    from xrdmtl.cli.outputs import is_model_folder, write_model

    out = tmp_path / "m"

    def interrupted(folder: Path) -> int:
        (folder / "checkpoint").mkdir()
        (folder / "checkpoint" / "state.json").write_text('{"step": 2}')
        raise KeyboardInterrupt

    def resumed(folder: Path) -> int:
        (folder / "checkpoint" / "state.json").write_text('{"step": 5}')
        (folder / "model.json").write_text("{}")
        return 5

    with pytest.raises(KeyboardInterrupt, match="checkpoint of step 2"):
        write_model(out, False, interrupted)
    assert is_model_folder(out) and not (out / "model.json").exists()
    assert write_model(out, True, resumed) == 5
    assert is_model_folder(out) and (out / "model.json").is_file()
