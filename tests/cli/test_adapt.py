"""``xrdmtl finetune`` and ``xrdmtl crossval`` on the bundled example patterns."""

from __future__ import annotations

import json

import torch
from clitools import invoke
from toymodels import toy_model


def test_finetune_writes_a_model_predict_reads(tmp_path, examples) -> None:
    base = toy_model(tmp_path / "base")
    out = tmp_path / "ft"
    res = invoke("finetune", "--model", base, "--labels", examples / "labels.csv", "--out", out,
                 "--wavelength", "0.561")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "label audit" in res.output and "the labeled patterns" in res.output
    assert "expected exact match on new patterns of this run" in res.output
    report = json.loads((out / "adaptation.json").read_text())
    assert report["n_labeled"] == 6 and report["estimate"]["n"] == 6
    assert (
        report["regime"]["repeats"] in (True, False)
        and report["network_alone"]["kind"] == "network"
    )
    pred = invoke(
        "predict", examples / "hdac_masked_xy_r_98.npy", "--model", out, "--wavelength", "0.561"
    )
    assert pred.exit_code == 0, pred.output
    assert pred.stdout.splitlines()[0].startswith("file,p_bastnaesite")
    bad = invoke("finetune", "--model", base, "--labels", examples / "labels.csv", "--out", tmp_path / "x",
                 "--no-audit", "--drop-contradicted")  # fmt: skip
    assert bad.exit_code != 0 and "needs the audit" in bad.output


def test_finetune_can_leave_contradicted_labels_alone_out_of_the_vote(tmp_path, examples) -> None:
    torch.manual_seed(0)  # the toy network's weights: what the choice weighs the vote against
    base = toy_model(tmp_path / "base")
    out = tmp_path / "ft"
    # 15 patterns of one run, every other one labeled: stages repeat, so a vote is taken
    res = invoke("finetune", "--model", base, "--labels", examples / "run" / "labels_every_other.csv",
                 "--out", out, "--wavelength", "0.561", "--contradicted", "drop-labels")  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads((out / "adaptation.json").read_text())
    assert report["regime"]["repeats"] and report["chosen"]["kind"] == "vote"
    left = report["labels_left_out_of_vote"]
    assert left and not report["left_out_of_vote"]  # the patterns stay, their labels do not vote
    assert all(line.split(": ")[1] in ("bastnaesite", "calcite", "rhenium") for line in left)
    assert "labels left out of the vote" in res.output
    assert json.loads((out / "model.json").read_text())["adapter"]["n_labels_left_out"] == len(left)
    bad = invoke("finetune", "--model", base, "--labels", examples / "labels.csv", "--out", tmp_path / "x",
                 "--contradicted", "some")  # fmt: skip
    assert bad.exit_code != 0 and "drop-labels" in bad.output


def test_finetune_says_when_the_nested_check_overrules_the_vote() -> None:
    """12 independent patterns whose neighbours agree by chance: leave-one-out prefers a vote, the
    nested check scores below the network with it, and the network stays, with a line that says so."""
    from pathlib import Path

    import numpy as np

    from xrdmtl.cli.adapt import _choice_lines
    from xrdmtl.model.preprocess import CONTRAST_CHANNEL, N_CHANNELS
    from xrdmtl.training.adapt import fit_adapter
    from xrdmtl.workflows.adapt import Adapted, AdaptReport

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, size=(12, 3)).astype(np.uint8)
    x = np.zeros((12, N_CHANNELS, 128), np.float32)
    x[:, CONTRAST_CHANNEL] = labels @ rng.normal(size=(3, 128)) * 0.3 + rng.normal(size=(12, 128))
    right = rng.random(labels.shape) > 0.1
    sure = rng.uniform(0.6, 0.95, size=labels.shape)
    fit = fit_adapter(x, labels, np.where(right == labels.astype(bool), sure, 1 - sure), [0.5] * 3)
    files = [f"p{i}.xy" for i in range(12)]
    adapted = Adapted(None, fit, False, fit.candidates)  # type: ignore[arg-type]  # no model needed
    report = AdaptReport(Path("ft"), files, [], [], [], [], adapted, 0.1)
    text = "\n".join(_choice_lines(report))
    assert "kept the network alone: leave-one-out preferred vote" in text, text
    assert fit.overruled_by is not None and fit.overruled_by.exact < fit.network.exact
    assert f"scored {fit.overruled_by.exact:.1%}, below the network" in text
    summary = report.to_dict()
    assert summary["overruled"]["kind"] == "vote" and summary["chosen"]["kind"] == "network"
    assert summary["overruled_by"]["exact"] == fit.overruled_by.exact


def test_crossval_prints_the_baselines(tmp_path, examples) -> None:
    base = toy_model(tmp_path / "base")
    args = (
        "crossval",
        "--labels",
        examples / "labels.csv",
        "--model",
        base,
        "--wavelength",
        "0.561",
    )
    res = invoke(*args, "--n", "", "--json")
    assert res.exit_code == 0, res.output
    (loo,) = json.loads(res.stdout)["schemes"]
    assert loo["leave_one_out"] and loo["held_out"] == 6
    assert {"default model", "nearest-neighbour vote", "adapted"} <= set(loo)
    table = invoke(*args, "--n", "3", "--splits", "2")
    assert (
        table.exit_code == 0
        and "nearest-neighbour vote" in table.stdout
        and "(2 splits)" in table.stdout
    )
    bad = invoke(*args, "--n", "two")
    assert bad.exit_code != 0 and "--n must be comma-separated integers" in bad.output
