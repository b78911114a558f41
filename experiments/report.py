"""The experiment report: ``report.md`` and a self-contained ``report.html`` from ``results.json``.

Every number in the report is read from the results dictionary written by
:func:`experiments.experiment.run_experiment`; the text that compares our figures with the paper's is
generated from those numbers with :func:`experiments.experiment.verdict`. The report is built as a list of
blocks (headings, paragraphs, tables, figures) rendered twice, as Markdown and as HTML with the PNG
figures embedded in base64. All files are written atomically.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, cast

import numpy as np

from xrdmtl.atomic import write_bytes

from .experiment import (
    VIEWS,
    ExperimentResults,
    HdacResults,
    Meta,
    PerFile,
    ResultsData,
    SettingResult,
    Stat,
    StatDict,
    verdict,
)

FIGURE_DPI = 110


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    name: str
    png: bytes
    caption: str


@dataclass
class Code:
    text: str


Block = Heading | Para | Table | Figure | Code


# ----------------------------------------------------------------------------------------- formatting


def pct(x: float) -> str:
    """A fraction as a percentage with one decimal (``0.7123`` → ``71.2``)."""
    return f"{100 * x:.1f}"


def pct_sd(s: Stat) -> str:
    """Mean ± sd of a fraction, in percent."""
    return f"{pct(s.mean)} ± {pct(s.sd)}"


def num_sd(s: Stat, digits: int = 1) -> str:
    """Mean ± sd of a plain number."""
    return f"{s.mean:.{digits}f} ± {s.sd:.{digits}f}"


def stat(d: StatDict | dict[str, Any]) -> Stat:
    return Stat.from_dict(d)


# ---------------------------------------------------------------------------------------- file output


def render_markdown(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Code):
            out.append(f"```\n{b.text}\n```")
        elif isinstance(b, Table):
            lines = ["| " + " | ".join(b.header) + " |", "|" + "---|" * len(b.header)]
            lines += ["| " + " | ".join(row) + " |" for row in b.rows]
            if b.caption:
                lines.insert(0, f"*{b.caption}*\n")
            out.append("\n".join(lines))
        else:
            out.append(f"![{b.caption}]({b.name})\n\n*{b.caption}*")
    return "\n\n".join(out) + "\n"


def _inline_html(text: str) -> str:
    """Escape text and turn the Markdown we emit inline (``**bold**``, `` `code` ``) into HTML."""
    parts = html.escape(text).split("`")
    for i in range(0, len(parts), 2):
        seg = parts[i].split("**")
        parts[i] = "".join(f"<b>{s}</b>" if j % 2 else s for j, s in enumerate(seg))
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def render_html(blocks: Sequence[Block], title: str) -> str:
    body: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{_inline_html(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            body.append(f"<p>{_inline_html(b.text)}</p>")
        elif isinstance(b, Code):
            body.append(f"<pre>{html.escape(b.text)}</pre>")
        elif isinstance(b, Table):
            cap = f"<caption>{_inline_html(b.caption)}</caption>" if b.caption else ""
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in b.header)
            rows = "".join(
                "<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>"
                for row in b.rows
            )
            body.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        else:
            data = base64.b64encode(b.png).decode("ascii")
            body.append(
                f'<figure><img alt="{html.escape(b.caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{_inline_html(b.caption)}</figcaption></figure>"
            )
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:0.92em}"
        "th,td{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}"
        "td:first-child,th:first-child{text-align:left}caption{caption-side:top;font-style:italic;"
        "text-align:left}img{max-width:100%}figcaption{font-style:italic}"
        "pre{background:#f4f4f4;padding:0.6em;overflow-x:auto}"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
        f"</title><style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIGURE_DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


# -------------------------------------------------------------------------------------------- figures


def fig_learning_curves(res: ResultsData) -> bytes:
    """Training loss and validation exact match (held-out synthetic set) against step, for every
    setting: seed mean, band min–max."""
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    for s in res["settings"].values():
        color = None
        for ax, curves in ((ax_loss, s["history"]), (ax_val, s["val_curve"])):
            arrays = [np.asarray(c, dtype=float).reshape(-1, 2) for c in curves]
            n = min(len(a) for a in arrays)
            if n == 0:
                continue
            y = np.stack([a[:n, 1] for a in arrays]) * (100 if ax is ax_val else 1)
            (line,) = ax.plot(
                arrays[0][:n, 0],
                y.mean(0),
                lw=1.3,
                color=color,
                label=s["label"],
                marker="o" if ax is ax_val else None,
                ms=3,
            )
            color = line.get_color()
            ax.fill_between(arrays[0][:n, 0], y.min(0), y.max(0), color=color, alpha=0.15)
    ax_loss.set_ylabel("training loss (each setting's own loss)")
    ax_loss.set_yscale("log")
    ax_val.set_ylabel("validation exact match (%), synthetic")
    for ax in (ax_loss, ax_val):
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    ax_val.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.tight_layout()
    return _png(fig)


class Point(TypedDict):
    """A point of a data-efficiency curve: N labeled patterns and the exact match."""

    n: int
    exact: StatDict


def fig_data_efficiency(res: ResultsData) -> bytes:
    """Exact-match accuracy against the number of labeled experimental patterns, next to the paper."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    curves: dict[str, list[Point]] = {
        f"simulated frames, {v}": [Point(n=p["n"], exact=p["exact"]) for p in pts]
        for v, pts in res["data_efficiency"].items()
    }
    if res["hdac"]["available"]:
        so = res["hdac"]["synthetic_only"]
        for view, pts in res["hdac"]["cv"].items():
            curves[f"paper's measured patterns, {view}"] = [
                Point(n=0, exact=so[view]["exact"]),
                *(Point(n=p["n"], exact=p["exact"]) for p in pts),
            ]
        if "cv_uncontradicted" in res["hdac"]:
            view = res["comparisons"]["data_efficiency_view"]
            curves[f"paper's measured patterns, {view}, uncontradicted labels"] = [
                Point(n=0, exact=res["hdac"]["synthetic_only_uncontradicted"][view]["exact"]),
                *(
                    Point(n=p["n"], exact=p["exact"])
                    for p in res["hdac"]["cv_uncontradicted"][view]
                ),
            ]
    for label, curve in curves.items():
        n = np.array([p["n"] for p in curve], dtype=float)
        m = np.array([p["exact"]["mean"] for p in curve]) * 100
        sd = np.array([p["exact"]["sd"] for p in curve]) * 100
        x = np.maximum(n, 1.0)
        ax.errorbar(x, m, yerr=sd, marker="o", capsize=3, label=label)
    paper = res["paper"]
    ax.axhline(paper["synthetic_only_exact"] * 100, ls="--", color="grey", lw=1)
    ax.axhline(paper["few_labeled_exact"] * 100, ls=":", color="grey", lw=1)
    ax.text(1.05, paper["synthetic_only_exact"] * 100 + 0.8, "paper, synthetic only", fontsize=7)
    ax.text(
        1.05, paper["few_labeled_exact"] * 100 + 0.8, "paper, with a few experimental", fontsize=7
    )
    ax.set_xscale("log")
    ticks = sorted({p["n"] for pts in curves.values() for p in pts})
    ax.set_xticks([max(t, 1) for t in ticks], [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("labeled experimental patterns N (N = 0: synthetic only)")
    ax.set_ylabel("exact match (%)")
    ax.set_ylim(0, 102)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    ax.grid(alpha=0.3)
    return _png(fig)


def fig_confusion(res: ResultsData, key: str) -> bytes:
    """Per-phase 2×2 confusion matrices (counts summed over seeds) on every test set."""
    import matplotlib.pyplot as plt

    conf = res["settings"][key]["confusion"]
    sets = list(conf)
    phases = res["meta"]["phases"]
    fig, axes = plt.subplots(
        len(sets), len(phases), figsize=(2.3 * len(phases), 2.1 * len(sets)), squeeze=False
    )
    for i, ts in enumerate(sets):
        for j, ph in enumerate(phases):
            c = conf[ts][ph]
            m = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]], dtype=float)
            ax = axes[i, j]
            ax.imshow(m, cmap="Blues", vmin=0)
            for (r, k), v in np.ndenumerate(m):
                ax.text(
                    k,
                    r,
                    f"{int(v)}",
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if v > m.max() / 2 else "black",
                )
            ax.set_xticks([0, 1], ["no", "yes"])
            ax.set_yticks([0, 1], ["no", "yes"])
            ax.set_title(f"{ph} — {ts}", fontsize=7)
            if j == 0:
                ax.set_ylabel("label")
            if i == len(sets) - 1:
                ax.set_xlabel("predicted")
    fig.tight_layout()
    return _png(fig)


def fig_example(res: ResultsData, e: dict, path: Path) -> bytes:
    """One test pattern (background-removed channel) with the reference sticks of the phases the model
    called and the saliency that drove each call, drawn by :func:`xrdmtl.io.plots.plot_pattern`."""
    from xrdmtl.io.plots import plot_pattern
    from xrdmtl.physics.phases import Reflections

    phases = res["meta"]["phases"]
    refl = {}
    for ph in phases:
        st = np.asarray(e["sticks"][ph], dtype=float).reshape(-1, 2)
        refl[ph] = Reflections(
            (), 2 * np.pi / st[:, 0], st[:, 0], None, st[:, 1], np.ones(len(st), dtype=int), None
        )
    called = [ph for ph in phases if e["probs"][ph] >= 0.5]
    labeled = ", ".join(ph for ph in phases if e["labels"][ph]) or "none"
    plot_pattern(
        (np.asarray(e["q"]), np.asarray(e["signal"])),
        called,
        refl,
        {ph: np.asarray(e["saliency"][ph]) for ph in phases},
        path,
        title=f"{e['file']} [{e['test_set']}], labels: {labeled}",
        probabilities=e["probs"],
    )
    return path.read_bytes()


def fig_comparisons(res: ResultsData) -> bytes:
    """Exact match (mean ± sd over seeds) of every setting on every test set, as grouped bars."""
    import matplotlib.pyplot as plt

    keys = list(res["settings"])
    sets = list(res["test_sets"])
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(sets)
    x = np.arange(len(keys))
    for i, ts in enumerate(sets):
        m = [res["settings"][k]["metrics"][ts]["exact"]["mean"] * 100 for k in keys]
        sd = [res["settings"][k]["metrics"][ts]["exact"]["sd"] * 100 for k in keys]
        ax.bar(x + (i - (len(sets) - 1) / 2) * width, m, width, yerr=sd, capsize=2, label=ts)
    ax.set_xticks(
        x, [res["settings"][k]["label"] for k in keys], rotation=30, ha="right", fontsize=7
    )
    ax.set_ylabel("exact match (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7, ncol=3)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


# ------------------------------------------------------------------------------------------- sections


def _metric_row(s: SettingResult, ts: str, phases: Sequence[str]) -> list[str]:
    m = s["metrics"][ts]
    return [pct_sd(stat(m["exact"])), pct_sd(stat(m["f1"]))] + [
        pct_sd(stat(m["acc"][p])) for p in phases
    ]


def _compare(res: ResultsData, key_a: str, key_b: str) -> tuple[str, str]:
    """Two settings compared on exact match (primary test set, and the measured unmasked patterns
    when present): one or two sentences, and the verdict on the primary set."""
    st = res["settings"]
    ts = res["comparisons"]["primary_test_set"]
    sets = [ts] + [t for t in ("hdac_unmasked",) if t in res["test_sets"]]
    words = {"better": "beats", "worse": "trails", "tie": "ties with"}
    out, first = [], "tie"
    for i, t in enumerate(sets):
        sa, sb = stat(st[key_a]["metrics"][t]["exact"]), stat(st[key_b]["metrics"][t]["exact"])
        v = verdict(sa, sb)
        first = v if i == 0 else first
        out.append(
            f"On `{t}`, {st[key_a]['label']} {words[v]} {st[key_b]['label']}: {pct_sd(sa)}% against "
            f"{pct_sd(sb)}% exact match ({'beyond' if v != 'tie' else 'within'} the spread)."
        )
    return " ".join(out), first


def section_architecture(res: ResultsData) -> list[Block]:
    phases = res["meta"]["phases"]
    comp = res["comparisons"]
    ts = comp["primary_test_set"]
    rows = []
    for key in comp["architecture"]:
        s = res["settings"][key]
        rows.append(
            [s["label"], f"{s['params']:,}", num_sd(stat(s["train_time_s"]))]
            + _metric_row(s, ts, phases)
        )
    header = ["model", "parameters", "train time (s)", "exact match (%)", "macro F1 (%)"] + [
        f"acc. {p} (%)" for p in phases
    ]
    return [
        Heading("1. Multi-task CNN against one binary CNN per phase"),
        Para(
            f"Same synthetic data, training steps and loss; test set `{ts}`; mean ± sd over seeds."
        ),
        Table(header, rows, f"Architectures on {ts}"),
    ]


def section_loss(res: ResultsData) -> list[Block]:
    phases = res["meta"]["phases"]
    comp = res["comparisons"]
    ts = comp["primary_test_set"]
    rows = [
        [res["settings"][k]["label"]] + _metric_row(res["settings"][k], ts, phases)
        for k in comp["loss"]
    ]
    header = ["loss", "exact match (%)", "macro F1 (%)"] + [f"acc. {p} (%)" for p in phases]
    return [
        Heading("2. Tailored loss against plain cross-entropy"),
        Para(f"Multi-task CNN, same data and budget; test set `{ts}`; mean ± sd over seeds."),
        Table(header, rows, f"Losses on {ts}"),
    ]


def section_data_efficiency(res: ResultsData) -> list[Block]:
    blocks: list[Block] = [
        Heading("3. Data efficiency: synthetic only, then a few labeled experimental patterns"),
        Para(
            "The synthetic-only multi-task model is fine-tuned on N labeled integrated frames from the frame "
            "simulator (a held-apart seed: our stand-in for labeled beamline data), mixed with synthetic "
            "batches; N = 0 is the synthetic-only model. Mean ± sd over seeds."
        ),
    ]
    for view, pts in res["data_efficiency"].items():
        rows = [[str(p["n"]), pct_sd(stat(p["exact"])), pct_sd(stat(p["f1"]))] for p in pts]
        blocks.append(
            Table(["N", "exact match (%)", "macro F1 (%)"], rows, f"Fine-tuned, tested on {view}")
        )
    return blocks


def section_masking(res: ResultsData) -> list[Block]:
    comp = res["comparisons"]["masking"]
    tests = comp["test_sets"]
    rows = []
    for train_mode, key in comp["train"].items():
        s = res["settings"][key]
        rows.append(
            [f"{train_mode} ({s['label']})"]
            + [pct_sd(stat(s["metrics"][t]["exact"])) for t in tests]
        )
    return [
        Heading("4. Masked against unmasked"),
        Para(
            "Models trained on masked-like, unmasked-like or mixed synthetic patterns, each tested on "
            "masked and unmasked integrations (exact match, %, mean ± sd over seeds)."
        ),
        Table(["trained on"] + [f"test {t}" for t in tests], rows, "Train view × test view"),
    ]


def section_real(res: ResultsData) -> list[Block]:
    """Every setting on the measured patterns, the base setting pattern by pattern, and the
    cross-validated fine-tuning and adaptation on the paper's measured patterns."""
    hd = res["hdac"]
    blocks: list[Block] = [
        Heading("Real patterns"),
        *_measured_table(res),
        *_per_pattern_tables(res),
    ]
    if hd["available"] and hd["cv"]:
        blocks += [
            Para(_cv_text(hd)),
            Table(_cv_header(hd), _cv_rows(hd), "Fine-tuning on measured patterns"),
        ]
    elif not hd["available"]:
        blocks.append(
            Para("The paper's measured patterns (`shared/data/hdac`) were not found: skipped.")
        )
    return blocks


def _measured_sets(res: ResultsData) -> list[str]:
    return [t for t in res["test_sets"] if res["test_sets"][t]["kind"] == "measured"]


def _measured_table(res: ResultsData) -> list[Block]:
    """Exact match of every setting on each measured set (nothing when there is none)."""
    ext = _measured_sets(res)
    if not ext:
        return []
    rows = [
        [s["label"]] + [pct_sd(stat(s["metrics"][t]["exact"])) for t in ext]
        for s in res["settings"].values()
    ]
    sets = " ".join(
        f"`{t}`: {res['test_sets'][t]['n']} patterns, {res['test_sets'][t]['description']}."
        for t in ext
    )
    return [
        Para(
            "Exact match of every synthetic-only setting on measured patterns, against the labels "
            "as given. " + sets
        ),
        Table(["setting"] + [f"{t} exact (%)" for t in ext], rows, "Measured patterns"),
    ]


def _per_pattern_tables(res: ResultsData) -> list[Block]:
    """One table per family of measured sets (its views side by side): the base setting's
    seed-mean probabilities per pattern and whether its calls agree with the labels."""
    base = res["settings"][res["comparisons"]["base"]]
    families: dict[str, list[str]] = {}
    for t in _measured_sets(res):
        if base["per_file"].get(t):
            families.setdefault(t.removesuffix("_unmasked").removesuffix("_masked"), []).append(t)
    blocks: list[Block] = []
    for fam, sets in families.items():
        header = ["file", "labels (" + ", ".join(res["meta"]["phases"]) + ")"]
        for t in sets:
            header += [f"p {t} (seed mean)", "agrees"]
        rows = _per_pattern_rows(res["meta"]["phases"], base, sets)
        blocks.append(Table(header, rows, f"{base['label']} on {fam}, per pattern"))
    return blocks


def _per_pattern_rows(
    phases: Sequence[str], base: SettingResult, sets: Sequence[str]
) -> list[list[str]]:
    by_file: dict[str, dict[str, PerFile]] = {}
    for t in sets:
        for r in base["per_file"][t]:
            by_file.setdefault(r["file"], {})[t] = r
    rows = []
    for f, recs in by_file.items():
        labels = " / ".join(
            dict.fromkeys(" ".join(str(r["labels"][p]) for p in phases) for r in recs.values())
        )
        row = [f, labels]
        for t in sets:
            rec = recs.get(t)
            row += (
                [
                    " ".join(f"{rec['probs'][p]:.2f}" for p in phases),
                    "yes" if rec["agree"] else "**no**",
                ]
                if rec
                else ["not in this set", "not in this set"]
            )
        rows.append(row)
    return rows


def _cv_rows(hd: HdacResults) -> list[list[str]]:
    """Per view: the synthetic-only models (N = 0), then each N of the cross-validation."""
    audited = "contradicted" in hd
    adapted = audited and "cv_adapted" in hd
    rows = []
    for view, pts in hd["cv"].items():
        so = stat(hd["synthetic_only"][view]["exact"])
        rows.append(
            [
                view,
                "0",
                pct_sd(so),
                "-",
                *(
                    [pct_sd(stat(hd["synthetic_only_uncontradicted"][view]["exact"])), "-"]
                    if audited
                    else []
                ),
                *(["-", "-", "-"] if adapted else []),
                str(so.n),
            ]
        )
        for i, p in enumerate(pts):
            cells = [view, str(p["n"]), pct_sd(stat(p["exact"]))]
            if audited:
                cells += [
                    pct_sd(stat(hd["cv_base"][view][i]["exact"])),
                    pct_sd(stat(hd["cv_uncontradicted"][view][i]["exact"])),
                    pct_sd(stat(hd["cv_base_uncontradicted"][view][i]["exact"])),
                ]
            if adapted:
                cells += [
                    pct_sd(stat(hd["cv_adapted"][view][i]["exact"])),
                    pct_sd(stat(hd["cv_adapted_uncontradicted"][view][i]["exact"])),
                    pct_sd(stat(hd["cv_vote"][view][i]["exact"])),
                ]
            rows.append([*cells, str(p["runs"])])
    return rows


def _cv_header(hd: HdacResults) -> list[str]:
    header = ["view", "N", "fine-tuned, labels as given (%)"]
    if "contradicted" in hd:
        header += [
            "before fine-tuning, same held-out (%)",
            "fine-tuned, uncontradicted labels (%)",
            "before fine-tuning, uncontradicted (%)",
        ]
        if "cv_adapted" in hd:
            header += [
                "adapted (`xrdmtl finetune`), labels as given (%)",
                "adapted, uncontradicted (%)",
                "nearest-neighbour vote (%)",
            ]
    return [*header, "runs (splits × seeds)"]


def _cv_text(hd: HdacResults) -> str:
    """What the cross-validation table holds."""
    text = (
        f"Cross-validated fine-tuning on the paper's {hd['n']} measured patterns: fine-tune on N "
        f"labeled, test on the other {hd['n']} − N; random splits per seed: {hd['splits']}. N = 0: "
        "the synthetic-only models on all patterns. Exact match."
    )
    if "contradicted" not in hd:
        return text
    listed = "; ".join(
        f"{v}: {', '.join(names) or 'none'}" for v, names in hd["contradicted"].items()
    )
    text += (
        " *Before fine-tuning* scores the synthetic-only model on the very patterns each "
        "fine-tuned model is tested on: the lift of fine-tuning is the difference, since a "
        "split's held-out set can be harder or easier than the whole. The physics-only label "
        f"audit (`xrdmtl audit --no-model`) contradicts these labels ({listed}); the "
        "*uncontradicted* columns score only the held-out patterns whose labels it does not "
        "contradict (they are still fine-tuned on)."
    )
    if "cv_adapted" in hd:
        text += (
            " *Adapted* is what `xrdmtl finetune` does: a vote of the most similar of the N labeled "
            "patterns beside the synthetic-only network, weighed by leave-one-out over the N labels "
            "(references whose labels the audit contradicts vote or not as that scores best; "
            "`docs/adapt.md`); the *nearest-neighbour vote* gives each held-out pattern the labels of "
            "its most similar labeled pattern. Same splits, same held-out patterns."
        )
    return text


def _frames_vs_measured(res: ResultsData, view: str) -> str:
    """A sentence when the simulated frames and the measured patterns disagree beyond the spread."""
    if not res["hdac"]["available"]:
        return ""
    sim = stat(res["data_efficiency"][f"sim_{view}"][0]["exact"])
    real = stat(res["hdac"]["synthetic_only"][view]["exact"])
    v = verdict(sim, real)
    if v == "tie":
        return ""
    return (
        f" The synthetic-only model scores {pct_sd(sim)}% on our simulated frames against {pct_sd(real)}% "
        f"on the measured patterns: our frame simulator, independent of the 1D synthesis by design, makes "
        f"{'harder' if v == 'worse' else 'easier'} patterns than the paper's experiment, so the measured "
        "patterns are the yardstick for the paper's figures."
    )


def _finetune_lift(res: ResultsData, view: str, few_n: int) -> str:
    """What fine-tuning did on the measured patterns, against the base model on the same held-out ones."""
    hd = res["hdac"]
    if not hd["available"] or "cv_base" not in hd:
        return ""
    pts = [p for p in hd["cv"].get(view, []) if p["n"] <= few_n]
    if not pts:
        return ""
    i = max(range(len(pts)), key=lambda j: pts[j]["n"])
    n = pts[i]["n"]
    tuned, before = stat(pts[i]["exact"]), stat(hd["cv_base"][view][i]["exact"])
    clean_tuned = stat(hd["cv_uncontradicted"][view][i]["exact"])
    clean_before = stat(hd["cv_base_uncontradicted"][view][i]["exact"])
    v = verdict(tuned, before)
    lift = {"better": "a lift", "tie": "no lift beyond the spread", "worse": "a loss"}[v]
    caps = ", ".join(
        f"{pct(1 - len(names) / hd['n'])}% {v_}" for v_, names in hd["contradicted"].items()
    )
    return (
        f" On the measured patterns ({view}, N = {n}) the same held-out patterns score {pct_sd(before)}% "
        f"before fine-tuning and {pct_sd(tuned)}% after ({lift}); on the held-out patterns whose labels "
        f"the physics-only audit does not contradict, {pct_sd(clean_before)}% before and "
        f"{pct_sd(clean_tuned)}% after. Against the labels as given, a model faithful to the patterns "
        f"tops out at {caps}: the share of patterns none of whose labels the audit contradicts."
        + _adapted_text(hd, view, i, n)
    )


def _adapted_text(hd: HdacResults, view: str, i: int, n: int) -> str:
    """What adaptation did on the same splits, next to the nearest-neighbour vote."""
    if "cv_adapted" not in hd:
        return ""
    adapted, vote = stat(hd["cv_adapted"][view][i]["exact"]), stat(hd["cv_vote"][view][i]["exact"])
    clean = stat(hd["cv_adapted_uncontradicted"][view][i]["exact"])
    v = {"better": "above", "tie": "level with", "worse": "below"}[verdict(adapted, vote)]
    return (
        f" Adapting to the same N = {n} labels instead (`xrdmtl finetune`: the network kept, a vote of "
        f"the most similar labeled patterns beside it) scores {pct_sd(adapted)}% ({pct_sd(clean)}% on the "
        f"uncontradicted labels), {v} a nearest-neighbour vote over the same labels ({pct_sd(vote)}%)."
    )


def _reused_text(meta: Meta | dict[str, Any]) -> str:
    """A sentence when runs came from the run cache, so the wall time is not read as their cost."""
    reused = meta.get("reused_runs", {})
    if not any(k for k, _ in reused.values()):
        return ""
    names = {"training_runs": "training runs", "finetune_runs": "fine-tuning runs"}
    parts = [f"{k} of {n} {names.get(what, what)}" for what, (k, n) in reused.items() if n]
    return (
        " " + " and ".join(parts) + " were reused from the run cache (`runs/`, same configuration "
        "and code inputs), so the wall time above excludes them; the training times in the tables "
        "are those measured when each run was made."
    )


Claim = tuple[list[str], Para]
"""One row of the summary table (claim, paper, ours) and the paragraph behind it."""


def section_paper(res: ResultsData) -> list[Block]:
    """'Ours next to the paper': each comparison, the verdict, and where we differ."""
    architecture, loss, masking = _paper_architecture(res), _paper_loss(res), _paper_masking(res)
    efficiency_rows, efficiency = _paper_data_efficiency(res)
    rows = [architecture[0], loss[0], *efficiency_rows, masking[0]]
    return [
        Heading("Ours next to the paper"),
        Table(["claim", "paper", "ours"], rows, "Summary"),
        architecture[1],
        loss[1],
        efficiency,
        masking[1],
    ]


def _paper_architecture(res: ResultsData) -> Claim:
    comp, st = res["comparisons"], res["settings"]
    mtl, binary = comp["architecture"][0], comp["architecture"][1]
    text, v = _compare(res, mtl, binary)
    row = [
        "MTL beats one binary CNN per phase",
        "yes",
        {"better": "yes", "tie": "no: a tie", "worse": "no: binary wins"}[v],
    ]
    where = (
        f" On `{comp['primary_test_set']}`, as in the paper."
        if v == "better"
        else f" On `{comp['primary_test_set']}`, we differ from the paper. Our binary networks are not the paper's: each is a narrower "
        "copy of our multi-task network with the same input channels (including the background-"
        "removed one), sized so that all of them together have about the multi-task model's "
        "parameters, and the three target phases rarely share reflections, so a shared trunk has "
        "little to add."
    )
    return row, Para(
        "**1. Architecture.** "
        + text
        + where
        + f" Parameters: {st[mtl]['params']:,} (multi-task) and {st[binary]['params']:,} (binary set)."
    )


def _paper_loss(res: ResultsData) -> Claim:
    comp = res["comparisons"]
    tail, plain = comp["tailored_loss"], comp["plain_loss"]
    text, v = _compare(res, tail, plain)
    row = [
        "tailored loss beats plain CE",
        "yes",
        {"better": "yes", "tie": "no: a tie", "worse": "no: plain CE wins"}[v],
    ]
    base_text, _ = _compare(res, comp["base"], plain)
    p_present = res["meta"]["synth"]["p_present"]
    where = (
        f" On `{comp['primary_test_set']}`, as in the paper."
        if v == "better"
        else f" On `{comp['primary_test_set']}`, we differ from the paper. Our synthetic batches draw each phase as present with "
        f"probability {p_present:.2f}, so the class imbalance the weights correct is small; the "
        "paper trained on fixed, less balanced sets."
    )
    return row, Para(
        "**2. Loss.** The paper's tailored loss is a class-weighted cross-entropy (weights from its code). "
        + text
        + where
        + " Our default loss against plain CE: "
        + base_text
    )


Case = tuple[str, str, Stat, Stat, str]
"""A data-efficiency claim: claim, the paper's figure as text, the paper's figure, ours, where."""


def _paper_cases(res: ResultsData) -> list[Case]:
    """The paper's two data-efficiency figures against ours: on simulated frames, and on the
    measured patterns where the run had them."""
    comp, paper = res["comparisons"], res["paper"]
    view = comp["data_efficiency_view"]
    pts = res["data_efficiency"][f"sim_{view}"]
    few = max((p for p in pts if p["n"] <= comp["few_n"]), key=lambda p: p["n"])
    so_ref = Stat(paper["synthetic_only_exact"], 0.0, 1)
    few_ref = Stat(paper["few_labeled_exact"], 0.0, 1)
    so_txt, few_txt = f"> {pct(so_ref.mean)}%", f"≈ {pct(few_ref.mean)}%"
    cases = [
        ("synthetic only", so_txt, so_ref, stat(pts[0]["exact"]), f"simulated frames ({view})"),
        (
            "with a few labeled patterns",
            few_txt,
            few_ref,
            stat(few["exact"]),
            f"simulated frames ({view}), N = {few['n']}",
        ),
    ]
    hd = res["hdac"]
    if not hd["available"]:
        return cases
    measured = f"the paper's measured patterns ({view})"
    so = stat(hd["synthetic_only"][view]["exact"])
    cases.insert(1, ("synthetic only", so_txt, so_ref, so, measured))
    source = hd["cv_adapted"] if "cv_adapted" in hd else hd["cv"]
    cv = [p for p in source.get(view, []) if p["n"] <= comp["few_n"]]
    if cv:
        best = max(cv, key=lambda p: p["n"])
        how = "adapted" if "cv_adapted" in hd else "fine-tuned"
        where = f"{measured}, {how} to N = {best['n']}, cross-validated"
        cases.append(("with a few labeled patterns", few_txt, few_ref, stat(best["exact"]), where))
    return cases


def _paper_data_efficiency(res: ResultsData) -> tuple[list[list[str]], Para]:
    meta, comp = res["meta"], res["comparisons"]
    view = comp["data_efficiency_view"]
    rows, sentences, short = [], [], False
    for claim, paper_txt, ref, ours, where in _paper_cases(res):
        v = verdict(ours, ref)
        short |= v == "worse"
        rows.append([f"{claim}: {where}", paper_txt, f"{pct_sd(ours)}%"])
        sentences.append(
            f"{claim}, {pct_sd(ours)}% on {where}, "
            f"{ {'better': 'above', 'tie': 'level with', 'worse': 'below'}[v] } the paper's {pct(ref.mean)}%"
        )
    why = (
        ""
        if not short
        else " Where we fall short of the paper, we see two reasons: this run's budget (preset "
        f"`{meta['preset']}`, {meta['config']['steps']} training steps and {meta['config']['finetune_steps']} "
        "fine-tuning steps per model), and what still differs between our synthesis and the measured "
        "patterns."
    )
    return rows, Para(
        "**3. Data efficiency.** Exact match: "
        + "; ".join(sentences)
        + "."
        + why
        + _frames_vs_measured(res, view)
        + _finetune_lift(res, view, comp["few_n"])
    )


def _paper_masking(res: ResultsData) -> Claim:
    mk, hd = res["comparisons"]["masking"], res["hdac"]
    base = res["settings"][mk["train"]["mixed"]]
    um, m = mk["test_sets"]
    su, sm = stat(base["metrics"][um]["exact"]), stat(base["metrics"][m]["exact"])
    v = verdict(su, sm)
    row = [
        "unmasked close to masked",
        "yes",
        {"tie": "yes", "better": "yes, unmasked better", "worse": "no: masked better"}[v],
    ]
    extra = ""
    if hd["available"]:
        hu, hm = (stat(hd["synthetic_only"][x]["exact"]) for x in VIEWS)
        extra = (
            f" On the paper's measured patterns: {pct_sd(hu)}% unmasked and {pct_sd(hm)}% masked"
            f" ({'within' if verdict(hu, hm) == 'tie' else 'beyond'} the spread)."
        )
    outcome = {
        "tie": " (within the spread). As in the paper, masking the anvil spots is not needed.",
        "better": " (unmasked better, beyond the spread). As in the paper, masking is not needed.",
        "worse": " (masked better, beyond the spread). Here we differ from the paper: unmasked "
        "integrations still cost accuracy, as the anvil spots that leak into them make sharp "
        "peaks that the model sometimes reads as a target phase.",
    }[v]
    return row, Para(
        f"**4. Masked against unmasked.** {base['label']} scores {pct_sd(su)}% exact match on `{um}` "
        f"and {pct_sd(sm)}% on `{m}`" + outcome + extra
    )


def section_provenance(res: ResultsData) -> list[Block]:
    meta = res["meta"]
    rows = [[k, v] for k, v in meta["versions"].items()]
    times = [[k, f"{v:.1f}"] for k, v in meta["stage_time_s"].items()]
    sets = [[t, d["kind"], str(d["n"]), d["description"]] for t, d in res["test_sets"].items()]
    return [
        Heading("How this report was made"),
        Para("Command:"),
        Code(meta["command"]),
        Para(
            f"Preset `{meta['preset']}`, seeds {', '.join(str(s) for s in meta['seeds'])}, "
            f"total wall time {meta['wall_time_s']:.1f} s on {meta['cpus']} CPU core(s), device `{meta['device']}`, "
            f"started {meta['started']}. Configuration: `{json.dumps(meta['config'], sort_keys=True)}`."
            + _reused_text(meta)
        ),
        Table(["test set", "kind", "patterns", "description"], sets, "Test sets"),
        Table(["stage", "wall time (s)"], times, "Wall time per stage"),
        Table(["package", "version"], rows, "Versions"),
    ]


def build_blocks(res: ResultsData, out: Path) -> tuple[list[Block], dict[str, bytes]]:
    """The report's blocks and the PNG figures they reference (by file name; some drawn into ``out``)."""
    comp = res["comparisons"]
    figs = {
        "fig_comparisons.png": fig_comparisons(res),
        "fig_learning_curves.png": fig_learning_curves(res),
        "fig_data_efficiency.png": fig_data_efficiency(res),
        "fig_confusion.png": fig_confusion(res, comp["base"]),
    }
    for i, e in enumerate(res["examples"], 1):
        figs[f"fig_example_{i}.png"] = fig_example(res, e, out / f"fig_example_{i}.png")
    captions = {
        "fig_comparisons.png": "Exact match of every setting on every test set (mean ± sd over seeds).",
        "fig_learning_curves.png": "Learning curves: training loss and exact match on the held-out "
        "synthetic validation set (seed mean, band min–max).",
        "fig_data_efficiency.png": "Data efficiency: exact match against the number of labeled "
        "experimental patterns; dashed lines: the paper's figures.",
        "fig_confusion.png": f"Per-phase confusion of {res['settings'][comp['base']]['label']} "
        "(counts summed over seeds).",
    }
    for i, e in enumerate(res["examples"], 1):
        captions[f"fig_example_{i}.png"] = (
            f"Example {i}: `{e['file']}` from `{e['test_set']}` (background-removed channel) with the "
            "reference sticks of the phases called and, below, the saliency that drove each call."
        )
    meta = res["meta"]
    blocks: list[Block] = [
        Heading("xrdmtl experiment report", 1),
        Para(
            f"The four comparisons of Li et al. (arXiv 2403.10042) on phases {', '.join(meta['phases'])}, "
            f"{len(meta['seeds'])} seeds per setting, preset `{meta['preset']}`. A difference is called a "
            "win only when it is larger than the combined spread (sd) of the two settings."
        ),
    ]
    blocks += section_paper(res)
    blocks.append(
        Figure("fig_comparisons.png", figs["fig_comparisons.png"], captions["fig_comparisons.png"])
    )
    blocks += section_architecture(res)
    blocks += section_loss(res)
    blocks.append(
        Figure(
            "fig_learning_curves.png",
            figs["fig_learning_curves.png"],
            captions["fig_learning_curves.png"],
        )
    )
    blocks += section_data_efficiency(res)
    blocks.append(
        Figure(
            "fig_data_efficiency.png",
            figs["fig_data_efficiency.png"],
            captions["fig_data_efficiency.png"],
        )
    )
    blocks += section_masking(res)
    blocks += section_real(res)
    blocks.append(Heading("What the model sees"))
    blocks.append(
        Figure("fig_confusion.png", figs["fig_confusion.png"], captions["fig_confusion.png"])
    )
    blocks += [Figure(n, figs[n], captions[n]) for n in figs if n.startswith("fig_example_")]
    blocks += section_provenance(res)
    return blocks, figs


def write_report(results: ExperimentResults | dict | str | Path, out_dir: str | Path) -> Path:
    """Write ``report.md``, ``report.html`` and the PNG figures into ``out_dir``; return the .md path.

    ``results`` is an :class:`ExperimentResults`, its dictionary, or a path to ``results.json`` (or to
    the folder holding it).
    """
    import matplotlib

    matplotlib.use("Agg")
    if isinstance(results, str | Path):
        results = ExperimentResults.load(results)
    res = results.data if isinstance(results, ExperimentResults) else cast(ResultsData, results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    blocks, figs = build_blocks(res, out)
    for name, png in figs.items():
        write_bytes(out / name, png)
    write_bytes(out / "report.html", render_html(blocks, "xrdmtl experiment report").encode())
    md = out / "report.md"
    write_bytes(md, render_markdown(blocks).encode())
    return md
