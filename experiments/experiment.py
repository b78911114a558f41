"""The paper's four comparisons in one run (``xrdmtl experiment``, ``make experiment``), saved as
``results.json``. Part of the research harness beside the package (``experiments/``, not installed).

A *setting* (architecture, loss, synthetic view) is trained by :func:`run_setting` for several seeds
on the same synthetic data and budget; every trained model is evaluated on the same test sets:

- ``sim_unmasked`` / ``sim_masked``: frames from :mod:`xrdmtl.synthesis.frames` at a held-out seed and
  wavelength, integrated without and with the anvil-spot mask (generated once, cached in ``out_dir``);
- ``rruff``: the measured powder patterns shipped in ``tests/data`` (an external check);
- ``hdac_unmasked`` / ``hdac_masked``: the paper's 29 measured patterns, when
  ``<repo>/../shared/data/hdac`` exists.

:func:`run_experiment` runs one function per comparison, each a thin loop over :func:`run_setting` and
:func:`run_finetune`: :func:`train_settings` for (1) multi-task against binary CNNs and the paper's
network, (2) every loss and (4) training and testing on masked and unmasked data; for (3) data
efficiency, :func:`data_efficiency` fine-tunes on N labeled simulated frames (our stand-in for labeled
beamline data) and :func:`measured_patterns` cross-validates on the measured patterns, fine-tuning
(:func:`finetuned_cv`) and adapting as ``xrdmtl finetune`` does (:func:`adapted_cv`, which is
:func:`xrdmtl.workflows.crossval.crossvalidate` on the same splits). Seeds give mean ± sd, and
:func:`verdict` calls a difference a win only when it is larger than the spread.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, TypedDict, TypeVar

import numpy as np

from xrdmtl.atomic import write_text
from xrdmtl.io.labels import LabeledPatterns
from xrdmtl.io.read import ReadOptions
from xrdmtl.model.metrics import evaluate as score
from xrdmtl.model.preprocess import model_input
from xrdmtl.physics.grid import DEFAULT_GRID, QGrid
from xrdmtl.progress import ProgressBar

PAPER: Paper = {
    "source": "Li et al., arXiv 2403.10042 (Adv. Intell. Syst. 6(12), 2024)",
    "synthetic_only_exact": 0.70,
    "few_labeled_exact": 0.90,
}
"""The paper's headline figures, the only numbers the report takes from outside the runs."""

VIEWS: tuple[Literal["unmasked", "masked"], ...] = ("unmasked", "masked")
HDAC_WAVELENGTH = 0.561  # Å, see shared/data/hdac/PROVENANCE.md
RRUFF_WAVELENGTH = 1.5418  # Å, Cu Kα: RRUFF powder patterns state none
HISTORY_POINTS = 100  # learning-curve points kept per run
T = TypeVar("T")


# ------------------------------------------------------------------------------------------ results
# The schema of results.json, typed: run_experiment writes it, the report reads it, mypy checks both.


class StatDict(TypedDict):
    mean: float
    sd: float
    n: int
    values: list[float]


class SetSummary(TypedDict):
    """One setting on one test set, over its seeds."""

    exact: StatDict
    f1: StatDict  # macro F1
    acc: dict[str, StatDict]  # per phase


class Confusion(TypedDict):
    tp: int
    fp: int
    fn: int
    tn: int


class PerFile(TypedDict):
    file: str
    labels: dict[str, int]
    probs: dict[str, float]
    agree: bool


class SettingResult(TypedDict):
    label: str
    arch: str
    loss: str
    train_view: str
    params: int
    train_time_s: StatDict
    history: list[list[list[float]]]  # per seed: (step, loss) pairs
    val_curve: list[Any]  # per seed: the evaluation rows
    metrics: dict[str, SetSummary]  # per test set
    confusion: dict[str, dict[str, Confusion]]  # per test set, per phase (summed over seeds)
    per_file: dict[str, list[PerFile]]  # measured sets, base setting only


class TestSetInfo(TypedDict):
    kind: str  # simulated | measured
    n: int
    description: str
    wavelength: float | None


class EfficiencyPoint(TypedDict):
    n: int
    exact: StatDict
    f1: StatDict


class CvPoint(TypedDict):
    n: int
    exact: StatDict
    runs: int


class CleanSummary(TypedDict):
    exact: StatDict
    n: int


class HdacResults(TypedDict, total=False):
    """The paper's measured patterns; only ``available`` and ``cv`` when they are absent."""

    available: bool
    cv: dict[str, list[CvPoint]]  # per view
    n: int
    splits: int
    synthetic_only: dict[str, SetSummary]
    contradicted: dict[str, list[str]]
    synthetic_only_uncontradicted: dict[str, CleanSummary]
    cv_uncontradicted: dict[str, list[CvPoint]]
    cv_base: dict[str, list[CvPoint]]
    cv_base_uncontradicted: dict[str, list[CvPoint]]
    # adaptation (xrdmtl finetune) and a nearest-neighbour vote on the same splits
    cv_adapted: dict[str, list[CvPoint]]
    cv_adapted_uncontradicted: dict[str, list[CvPoint]]
    cv_vote: dict[str, list[CvPoint]]


class Masking(TypedDict):
    train: dict[str, str]  # mixed / unmasked / masked → setting
    test_sets: list[str]


class Comparisons(TypedDict):
    primary_test_set: str
    base: str
    architecture: list[str]
    loss: list[str]
    tailored_loss: str
    plain_loss: str
    masking: Masking
    data_efficiency_view: str
    few_n: int


class Meta(TypedDict):
    command: str
    preset: str
    config: dict[str, Any]
    versions: dict[str, str]
    seeds: list[int]
    phases: list[str]
    started: str
    wall_time_s: float
    stage_time_s: dict[str, float]
    reused_runs: dict[str, list[int]]
    cpus: int
    synth: dict[str, Any]
    device: str


class Paper(TypedDict):
    source: str
    synthetic_only_exact: float
    few_labeled_exact: float


class ResultsData(TypedDict):
    schema: int
    meta: Meta
    paper: Paper
    test_sets: dict[str, TestSetInfo]
    settings: dict[str, SettingResult]
    comparisons: Comparisons
    data_efficiency: dict[str, list[EfficiencyPoint]]
    hdac: HdacResults
    examples: list[dict[str, Any]]


# ----------------------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation of ``n`` values (sd 0 for a single value)."""

    mean: float
    sd: float
    n: int
    values: tuple[float, ...] = ()

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        v = np.asarray(values, dtype=float)
        sd = float(v.std(ddof=1)) if v.size > 1 else 0.0
        return cls(
            round(float(v.mean()), 6),
            round(sd, 6),
            int(v.size),
            tuple(round(float(x), 6) for x in v),
        )

    def to_dict(self) -> StatDict:
        return {"mean": self.mean, "sd": self.sd, "n": self.n, "values": list(self.values)}

    @classmethod
    def from_dict(cls, d: StatDict | dict[str, Any]) -> Stat:
        return cls(float(d["mean"]), float(d["sd"]), int(d["n"]), tuple(d.get("values", ())))


def verdict(a: Stat, b: Stat) -> Literal["better", "worse", "tie"]:
    """Whether ``a`` beats ``b``: only when the difference of means exceeds their combined spread.

    The spread is √(sd_a² + sd_b²); a smaller difference is a tie, whatever its sign.
    """
    diff = a.mean - b.mean
    if abs(diff) <= math.hypot(a.sd, b.sd):
        return "tie"
    return "better" if diff > 0 else "worse"


# ------------------------------------------------------------------------------------------- config


@dataclass
class ExperimentConfig:
    """Sizes, budgets and seeds of one experiment run; see :meth:`preset`."""

    preset_name: str = "full"
    seeds: int = 3
    steps: int = 1500
    batch_size: int = 64
    finetune_steps: int = 200
    n_test: int = 200
    n_pool: int = 100
    finetune_ns: tuple[int, ...] = (5, 10, 20, 50, 100)
    hdac_ns: tuple[int, ...] = (5, 10, 20)
    hdac_splits: int = 3
    val_size: int = 1000
    archs: tuple[str, ...] = ("mtl", "binary", "paper")
    losses: tuple[str, ...] = ()
    tailored_loss: str = "weighted_ce"
    plain_loss: str = "ce"
    few_n: int = 20
    test_seed: int = 7001
    pool_seed: int = 7002
    test_wavelength: float = 0.4133
    pool_wavelength: float = HDAC_WAVELENGTH
    n_examples: int = 3
    grid: QGrid = field(default_factory=lambda: DEFAULT_GRID)

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ValueError(f"seeds must be at least 1, got {self.seeds}")
        if max(self.finetune_ns, default=0) > self.n_pool:
            raise ValueError(
                f"fine-tuning sizes {self.finetune_ns} exceed the pool of {self.n_pool} frames"
            )

    @classmethod
    def preset(cls, name: str, seeds: int | None = None) -> ExperimentConfig:
        """``toy`` (seconds, for tests), ``quick`` (≤ 10 min on 2 cores) or ``full`` (≤ 2 h)."""
        presets: dict[str, dict[str, Any]] = {
            "toy": dict(
                seeds=2,
                steps=4,
                batch_size=8,
                finetune_steps=2,
                n_test=6,
                n_pool=5,
                val_size=16,
                finetune_ns=(5,),
                hdac_ns=(5,),
                hdac_splits=1,
                losses=("ce", "weighted_ce"),
                n_examples=2,
                few_n=10,
                grid=QGrid(0.8, 5.0, 512),
            ),
            "quick": dict(
                seeds=3,
                steps=250,
                batch_size=32,
                finetune_steps=60,
                n_test=60,
                n_pool=40,
                val_size=200,
                finetune_ns=(5, 20, 40),
                hdac_ns=(5, 10, 20),
                hdac_splits=2,
            ),
            "full": {},
        }
        if name not in presets:
            raise ValueError(f"unknown preset {name!r} (known: {', '.join(presets)})")
        cfg = cls(preset_name=name, **presets[name])
        return cfg if seeds is None else replace(cfg, seeds=int(seeds))

    def to_dict(self) -> dict:
        """JSON-ready fields (the grid as a dict)."""
        return asdict(self)


# -------------------------------------------------------------------------------------------- data


@dataclass
class LabeledSet:
    """Patterns on the model grid with their labels: a test set or a fine-tuning pool."""

    name: str
    kind: Literal["simulated", "measured"]
    description: str
    files: list[Path]
    intensity: np.ndarray  # (n, G) float32
    coverage: np.ndarray  # (n, G) bool
    labels: np.ndarray  # (n, T) uint8
    wavelength: float | None
    grid: QGrid

    @property
    def x(self) -> np.ndarray:
        """Model input ``(n, N_CHANNELS, G)``."""
        return model_input(self.intensity, self.coverage, self.grid.step)

    def __len__(self) -> int:
        return len(self.files)

    def info(self) -> TestSetInfo:
        return {
            "kind": self.kind,
            "n": len(self),
            "description": self.description,
            "wavelength": self.wavelength,
        }


HDAC_ENV = "XRDMTL_HDAC"  # folder of the paper's measured patterns (labels_unmasked.csv, …)
RRUFF_ENV = "XRDMTL_RRUFF"  # folder of measured RRUFF powder patterns (rruff_<mineral>_<id>.txt)


ROOT = Path(__file__).resolve().parents[1]
"""The repository this harness lives in (``experiments/`` sits beside ``src/`` and ``tests/``)."""


def hdac_dir() -> Path | None:
    """The paper's measured patterns: the folder ``$XRDMTL_HDAC`` names, else ``../shared/data/hdac``
    next to the repository; None when neither holds them (the experiment then leaves them out)."""
    env = os.environ.get(HDAC_ENV)
    d = Path(env) if env else ROOT.parent / "shared" / "data" / "hdac"
    return d if (d / "labels_unmasked.csv").is_file() else None


def rruff_files() -> list[Path]:
    """Measured RRUFF powder patterns ``rruff_<mineral>_<id>.txt`` in the folder ``$XRDMTL_RRUFF`` names,
    else in the repository's ``tests/data`` (DIF peak lists, computed rather than measured, left out)."""
    env = os.environ.get(RRUFF_ENV)
    folder = Path(env) if env else ROOT / "tests" / "data"
    if not folder.is_dir():
        return []
    return sorted(f for f in folder.glob("rruff_*.txt") if "_DIF" not in f.name)


def labeled_set(
    name: str,
    kind: Literal["simulated", "measured"],
    description: str,
    files: Sequence[str | Path],
    labels: np.ndarray,
    grid: QGrid,
    wavelength: float | None,
) -> LabeledSet:
    """Read ``files`` onto ``grid``."""
    from xrdmtl.io.readers import load_pattern

    on_grid = [load_pattern(f, wavelength=wavelength).on_grid(grid) for f in files]
    return LabeledSet(
        name,
        kind,
        description,
        [Path(f) for f in files],
        np.stack([g[0] for g in on_grid]),
        np.stack([g[1] for g in on_grid]),
        np.asarray(labels, dtype=np.uint8),
        wavelength,
        grid,
    )


def csv_set(
    name: str,
    kind: Literal["simulated", "measured"],
    description: str,
    labels_csv: Path,
    phases: Sequence[str],
    grid: QGrid,
    wavelength: float | None,
) -> LabeledSet:
    """Read every file of a labels CSV onto ``grid``."""
    from xrdmtl.io.labels import read_labels

    files, labels = read_labels(labels_csv, phases)
    return labeled_set(name, kind, description, files, labels, grid, wavelength)


def rruff_set(phases: Sequence[str], grid: QGrid) -> LabeledSet | None:
    """RRUFF patterns labeled by the mineral named in the file name."""
    files = rruff_files()
    if not files:
        return None
    labels = np.array([[int(f.name.split("_")[1].lower() == p) for p in phases] for f in files])
    return labeled_set(
        "rruff",
        "measured",
        "RRUFF powder patterns (Cu Kα), labeled by mineral name",
        files,
        labels,
        grid,
        RRUFF_WAVELENGTH,
    )


def simulated_sets(
    name: str,
    out: Path,
    n: int,
    seed: int,
    wavelength: float,
    phases: Sequence[str],
    grid: QGrid,
    description: str,
) -> dict[str, LabeledSet]:
    """Simulated frames integrated unmasked and masked (generated once; reused when cached)."""
    from xrdmtl.synthesis.frames import simulate_frames

    params = {"n": n, "seed": seed, "wavelength": wavelength}
    stamp = out / "params.json"
    if not stamp.is_file() or json.loads(stamp.read_text()) != params:
        simulate_frames(out, n, seed, wavelength=wavelength)
        _write_json(stamp, params)
    return {
        view: csv_set(
            f"{name}_{view}",
            "simulated",
            f"{description}, integrated {view}",
            out / view / "labels.csv",
            phases,
            grid,
            wavelength,
        )
        for view in VIEWS
    }


# -------------------------------------------------------------------------------------- evaluation


def evaluate(
    probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray, phases: Sequence[str]
) -> dict:
    """Exact match, macro F1, per-phase accuracy and confusion counts of one model on one set."""
    ev = score(labels, (probs >= thresholds).astype(np.uint8))
    return {
        "exact": ev.exact_match,
        "f1": float(ev.f1.mean()),
        "acc": {p: float(ev.accuracy[i]) for i, p in enumerate(phases)},
        "confusion": {
            p: dict(zip(("tp", "fp", "fn", "tn"), map(int, ev.confusion[i]), strict=True))
            for i, p in enumerate(phases)
        },
    }


def predict_sets(
    model_path: Path, sets: dict[str, LabeledSet]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Probabilities of a saved model on every set, and its per-phase thresholds."""
    from xrdmtl.model.files import load_model

    model = load_model(model_path, device="cpu")
    return {k: model.predict_proba(s.x) for k, s in sets.items()}, model.thresholds


# -------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Setting:
    """One trained configuration: architecture, loss and which synthetic view it learns from."""

    key: str
    label: str
    arch: str
    loss: str
    train_view: Literal["mixed", "unmasked", "masked"] = "mixed"


def build_settings(
    config: ExperimentConfig, base_loss: str, losses: Sequence[str]
) -> dict[str, Setting]:
    """The settings the four comparisons need, the shared multi-task baseline (``mtl``) first."""
    arch_names = {"mtl": "multi-task CNN", "binary": "binary CNN per phase", "paper": "paper's CNN"}
    out = {"mtl": Setting("mtl", f"MTL, {base_loss} (base)", "mtl", base_loss)}
    for arch in config.archs:
        if arch != "mtl":
            out[arch] = Setting(arch, f"{arch_names.get(arch, arch)}, {base_loss}", arch, base_loss)
    for loss in losses:
        if loss != base_loss:
            out[f"mtl_{loss}"] = Setting(f"mtl_{loss}", f"MTL, {loss}", "mtl", loss)
    for view in VIEWS:
        out[f"mtl_{view}_only"] = Setting(
            f"mtl_{view}_only", f"MTL, trained {view} only", "mtl", base_loss, view
        )
    return out


def _history(raw: Sequence[Sequence[float]]) -> list[list[float]]:
    """Learning curve as at most :data:`HISTORY_POINTS` (step, loss) pairs."""
    h = np.asarray(raw, dtype=float).reshape(-1, 2)
    idx = (
        np.unique(np.linspace(0, len(h) - 1, min(len(h), HISTORY_POINTS)).round().astype(int))
        if len(h)
        else np.zeros(0, dtype=int)
    )
    return [[round(float(h[i, 0]), 1), round(float(h[i, 1]), 5)] for i in idx]


def run_setting(
    setting: Setting, seed: int, config: ExperimentConfig, phases: Sequence[str], out_dir: Path
) -> dict:
    """Train one setting at one seed (reused when ``out_dir`` already holds it); its run record."""
    from xrdmtl.training.train import CHECKPOINT, TrainConfig, train

    record_path = out_dir / "record.json"
    tc = TrainConfig(
        phases=list(phases),
        arch=setting.arch,
        loss=setting.loss,
        steps=config.steps,
        batch_size=config.batch_size,
        seed=seed,
        grid=config.grid.to_dict(),
        val_size=config.val_size,
        calib_size=config.val_size,
        eval_every=max(1, config.steps // 5),
        patience=0,
        unmasked_fraction={"mixed": None, "unmasked": 1.0, "masked": 0.0}[setting.train_view],
    )
    key = _hash(asdict(tc), _inputs_version())
    if record_path.is_file() and json.loads(record_path.read_text()).get("hash") == key:
        return {**json.loads(record_path.read_text()), "reused": True}
    t0 = time.perf_counter()
    result = train(tc, out_dir / "model", progress=False)
    shutil.rmtree(
        out_dir / "model" / CHECKPOINT, ignore_errors=True
    )  # resume state: not needed here
    record = {
        "hash": key,
        "setting": setting.key,
        "seed": seed,
        "train_time_s": time.perf_counter() - t0,
        "params": int(result.n_parameters),
        "history": _history(result.history),
        "val_curve": [[int(e["step"]), round(float(e["val_exact"]), 4)] for e in result.evals],
        "model": str(out_dir / "model"),
    }
    _write_json(record_path, record)
    return {**record, "reused": False}


def run_finetune(
    base_model: Path,
    pool: LabeledSet,
    idx: np.ndarray,
    seed: int,
    config: ExperimentConfig,
    out_dir: Path,
) -> tuple[Path, bool]:
    """Fine-tune ``base_model`` on the patterns ``idx`` of ``pool`` (reused when ``out_dir`` already
    holds that run); the new model's folder, and whether it was reused."""
    from xrdmtl.training.finetune import finetune

    model = out_dir / "model"
    stamp = out_dir / "stamp.json"
    key = _hash(
        (base_model / "model.json").read_text(),
        [str(pool.files[i]) for i in idx],
        seed,
        config.finetune_steps,
        config.batch_size,
        _finetune_recipe(),
        _inputs_version(),
    )
    if stamp.is_file() and json.loads(stamp.read_text()) == key:
        return model, True
    finetune(
        base_model,
        LabeledPatterns(pool.intensity[idx], pool.coverage[idx], pool.labels[idx]),
        model,
        steps=config.finetune_steps,
        batch_size=config.batch_size,
        seed=seed,
        progress=False,
    )
    _write_json(stamp, key)
    return model, False


def _inputs_version() -> dict:
    """What else decides a run's outcome: the synthesis defaults and the model input's version."""
    from xrdmtl.model.files import PREPROCESSING
    from xrdmtl.synthesis.patterns import SYNTH_VERSION, SynthConfig

    return {
        "synth": asdict(SynthConfig()),
        "synth_version": SYNTH_VERSION,
        "preprocessing": PREPROCESSING["version"],
    }


def _finetune_recipe() -> dict:
    """The fine-tuning recipe the experiment relies on (:class:`~xrdmtl.training.finetune.FinetuneConfig`'s
    defaults) and the fine-tuning version."""
    from xrdmtl.training.finetune import FINETUNE_VERSION, FinetuneConfig

    return {"version": FINETUNE_VERSION, **asdict(FinetuneConfig())}


def _hash(*parts: Any) -> str:
    return hashlib.sha1(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:16]


def _write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=1, allow_nan=False) + "\n")


# -------------------------------------------------------------------------------------------- run


@dataclass
class ExperimentResults:
    """Everything the report needs, as the JSON-ready dictionary ``data`` (``results.json``; its
    schema is :class:`ResultsData`)."""

    data: ResultsData
    path: Path

    @classmethod
    def load(cls, path: str | Path) -> ExperimentResults:
        """Read a ``results.json`` (or the folder holding it)."""
        p = Path(path)
        p = p / "results.json" if p.is_dir() else p
        return cls(json.loads(p.read_text()), p)


def package_versions() -> dict[str, str]:
    """Versions of the packages behind the numbers."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("xrdmtl", "torch", "numpy", "scipy", "pymatgen", "pyFAI", "fabio"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _summary(values: Sequence[dict[str, Any]], phases: Sequence[str]) -> SetSummary:
    """Per-seed evaluations of one setting on one set → Stat dicts (confusion summed)."""
    return {
        "exact": Stat.of([v["exact"] for v in values]).to_dict(),
        "f1": Stat.of([v["f1"] for v in values]).to_dict(),
        "acc": {p: Stat.of([v["acc"][p] for v in values]).to_dict() for p in phases},
    }


@dataclass
class Run:
    """What the comparisons of one experiment run share: its budgets, folder, phases and seeds, the
    progress bar, which runs came from the cache and how long each stage took."""

    config: ExperimentConfig
    out: Path
    phases: list[str]
    seeds: list[int]
    bar: ProgressBar
    reused: dict[str, list[bool]] = field(
        default_factory=lambda: {"training_runs": [], "finetune_runs": []}
    )
    stage: dict[str, float] = field(default_factory=dict)

    def timed(self, stage: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, its wall time kept as stage ``stage``."""
        t0 = time.perf_counter()
        out = fn(*args)
        self.stage[stage] = time.perf_counter() - t0
        return out


def run_experiment(
    out_dir: str | Path,
    config: ExperimentConfig | None = None,
    progress: bool = True,
    command: str | None = None,
) -> ExperimentResults:
    """Run the four comparisons into ``out_dir`` and write ``out_dir/results.json``.

    Data sets and trained models are cached in ``out_dir`` (``data/``, ``runs/``, each git-ignored), so
    a rerun with the same configuration reuses them.
    """
    from xrdmtl.model.losses import LOSSES
    from xrdmtl.physics.phases import TARGETS
    from xrdmtl.training.train import TrainConfig

    config = config or ExperimentConfig()
    out = Path(out_dir)
    for cache in ("data", "runs"):  # frames and models: kept out of git when out_dir is committed
        (out / cache).mkdir(parents=True, exist_ok=True)
        (out / cache / ".gitignore").write_text("*\n")
    t_start, started = time.perf_counter(), datetime.now(timezone.utc).isoformat(timespec="seconds")
    base_loss = TrainConfig().loss
    losses = list(
        dict.fromkeys([*(config.losses or LOSSES), config.tailored_loss, config.plain_loss])
    )
    settings = build_settings(config, base_loss, losses)
    hd = hdac_dir()
    seeds = list(range(config.seeds))
    bar = ProgressBar(_n_steps(config, len(settings), hd), "experiment", progress, transient=False)
    run = Run(config, out, [getattr(p, "name", p) for p in TARGETS], seeds, bar)
    try:
        tests, pool = run.timed("data", load_sets, run, hd)
        bar.update(1, description="data ready")
        settings_out, base_models = run.timed("training", train_settings, run, settings, tests)
        data_eff = run.timed(
            "finetune_simulated", data_efficiency, run, pool, tests, base_models, settings_out
        )
        hdac = run.timed(
            "finetune_measured", measured_patterns, run, hd, tests, base_models, settings_out
        )
        examples = run.timed(
            "examples", make_examples, base_models[seeds[0]], tests, config.n_examples, run.phases
        )
    finally:
        bar.close()
    data_out: ResultsData = {
        "schema": 1,
        "meta": _meta(run, command, started, time.perf_counter() - t_start),
        "paper": PAPER,
        "test_sets": {t: s.info() for t, s in tests.items()},
        "settings": settings_out,
        "comparisons": _comparisons(config, losses, base_loss),
        "data_efficiency": data_eff,
        "hdac": hdac,
        "examples": examples,
    }
    path = out / "results.json"
    _write_json(path, data_out)
    return ExperimentResults(data_out, path)


def _n_steps(config: ExperimentConfig, n_settings: int, hd: Path | None) -> int:
    """The progress bar's units: the data, each training run and each fine-tuning run."""
    n_hdac = len(VIEWS) * config.seeds * config.hdac_splits * len(config.hdac_ns) if hd else 0
    return 1 + (n_settings + len(VIEWS) * len(config.finetune_ns)) * config.seeds + n_hdac


def load_sets(run: Run, hd: Path | None) -> tuple[dict[str, LabeledSet], dict[str, LabeledSet]]:
    """The test sets (simulated frames, RRUFF, the paper's measured patterns) and the simulated
    fine-tuning pool, per view."""
    config, phases, grid, data = run.config, run.phases, run.config.grid, run.out / "data"
    run.bar.update(description="simulating test and pool frames")
    test_what = (
        f"simulated frames, held-out seed {config.test_seed} and λ = {config.test_wavelength} Å"
    )
    sim = simulated_sets(
        "sim", data / "test", config.n_test, config.test_seed, config.test_wavelength, phases, grid,
        test_what,
    )  # fmt: skip
    pool_what = (
        f"labeled simulated frames (fine-tuning pool), seed {config.pool_seed}, "
        f"λ = {config.pool_wavelength} Å"
    )
    pool = simulated_sets(
        "pool", data / "pool", config.n_pool, config.pool_seed, config.pool_wavelength, phases,
        grid, pool_what,
    )  # fmt: skip
    tests = {f"sim_{v}": s for v, s in sim.items()}
    rr = rruff_set(phases, grid)
    if rr is not None:
        tests["rruff"] = rr
    if hd is not None:
        for v in VIEWS:
            tests[f"hdac_{v}"] = csv_set(
                f"hdac_{v}", "measured", f"the paper's measured HDAC patterns, {v}, labels as given",
                hd / f"labels_{v}.csv", phases, grid, HDAC_WAVELENGTH,
            )  # fmt: skip
    return tests, pool


# ------------------------------------------------- comparisons 1, 2 and 4: architecture, loss, masking


def train_settings(
    run: Run, settings: dict[str, Setting], tests: dict[str, LabeledSet]
) -> tuple[dict[str, SettingResult], dict[int, Path]]:
    """Every setting trained at every seed and scored on every test set; the base setting's models
    per seed (the starting point of every fine-tuning)."""
    out: dict[str, SettingResult] = {}
    base_models: dict[int, Path] = {}
    for key, setting in settings.items():
        out[key], models = train_setting(run, setting, tests)
        if key == "mtl":
            base_models = dict(zip(run.seeds, models, strict=True))
    return out, base_models


def train_setting(
    run: Run, setting: Setting, tests: dict[str, LabeledSet]
) -> tuple[SettingResult, list[Path]]:
    """One setting at every seed, scored on every test set (the measured sets pattern by pattern for
    the base setting); its models per seed."""
    phases, key = run.phases, setting.key
    records: list[dict[str, Any]] = []
    evals: dict[str, list[dict[str, Any]]] = {t: [] for t in tests}
    probs_sum = {t: np.zeros(tests[t].labels.shape) for t in tests}
    for seed in run.seeds:
        run.bar.update(description=f"train {key} seed {seed}")
        rec = run_setting(setting, seed, run.config, phases, run.out / "runs" / key / f"seed{seed}")
        run.reused["training_runs"].append(rec.pop("reused"))
        probs, thr = predict_sets(Path(rec["model"]), tests)
        for t, p in probs.items():
            evals[t].append(evaluate(p, tests[t].labels, thr, phases))
            probs_sum[t] += p
        records.append(rec)
        run.bar.update(1, description=f"trained {key} seed {seed}")
    result: SettingResult = {
        "label": setting.label,
        "arch": setting.arch,
        "loss": setting.loss,
        "train_view": setting.train_view,
        "params": records[0]["params"],
        "train_time_s": Stat.of([r["train_time_s"] for r in records]).to_dict(),
        "history": [r["history"] for r in records],
        "val_curve": [r["val_curve"] for r in records],
        "metrics": {t: _summary(evals[t], phases) for t in tests},
        "confusion": {
            t: {p: _confusion_sum([e["confusion"][p] for e in evals[t]]) for p in phases}
            for t in tests
        },
        "per_file": {  # the seed mean, called at the last seed's thresholds
            t: _per_file(tests[t], probs_sum[t] / len(run.seeds), thr, phases)
            for t in tests
            if tests[t].kind == "measured" and key == "mtl"
        },
    }
    return result, [Path(r["model"]) for r in records]


# ------------------------------------------------------------ comparison 3: data efficiency, simulated


def data_efficiency(
    run: Run,
    pool: dict[str, LabeledSet],
    tests: dict[str, LabeledSet],
    base_models: dict[int, Path],
    settings: dict[str, SettingResult],
) -> dict[str, list[EfficiencyPoint]]:
    """Per view, the base models (N = 0) and the base models fine-tuned on N labeled pool frames,
    scored on the simulated test frames of that view."""
    out: dict[str, list[EfficiencyPoint]] = {}
    for v in VIEWS:
        ts = f"sim_{v}"
        base = settings["mtl"]["metrics"][ts]
        first: EfficiencyPoint = {"n": 0, "exact": base["exact"], "f1": base["f1"]}
        out[ts] = [first] + [
            _finetuned_point(run, pool[v], tests[ts], base_models, n, v)
            for n in run.config.finetune_ns
        ]
    return out


def _finetuned_point(
    run: Run, pool: LabeledSet, test: LabeledSet, base_models: dict[int, Path], n: int, view: str
) -> EfficiencyPoint:
    """The base model of each seed fine-tuned on ``n`` frames of ``pool`` drawn by that seed."""
    exact, f1 = [], []
    for seed in run.seeds:
        run.bar.update(description=f"fine-tune {view} N={n} seed {seed}")
        idx = np.random.default_rng([seed, n]).permutation(len(pool))[:n]
        folder = run.out / "runs" / f"finetune_{view}" / f"n{n}_seed{seed}"
        model, was_reused = run_finetune(base_models[seed], pool, idx, seed, run.config, folder)
        run.reused["finetune_runs"].append(was_reused)
        probs, thr = predict_sets(model, {"test": test})
        e = evaluate(probs["test"], test.labels, thr, run.phases)
        exact.append(e["exact"])
        f1.append(e["f1"])
        run.bar.update(1, description=f"fine-tuned {view} N={n} seed {seed}")
    return {"n": n, "exact": Stat.of(exact).to_dict(), "f1": Stat.of(f1).to_dict()}


# ---------------------------------------------- comparison 3 on the paper's measured patterns


CV_ROWS: dict[str, tuple[str, bool]] = {
    "cv_base": ("default model", False),
    "cv_base_uncontradicted": ("default model", True),
    "cv_adapted": ("adapted", False),
    "cv_adapted_uncontradicted": ("adapted", True),
    "cv_vote": ("nearest-neighbour vote", False),
}
"""The results' cross-validation rows taken from :func:`~xrdmtl.workflows.crossval.crossvalidate`:
its row, and whether on the uncontradicted held-out patterns only."""


def measured_patterns(
    run: Run,
    hd: Path | None,
    tests: dict[str, LabeledSet],
    base_models: dict[int, Path],
    settings: dict[str, SettingResult],
) -> HdacResults:
    """The base models on the paper's measured patterns, and what N of their labels buy, cross-
    validated: the base model fine-tuned on them, and adapted to them as ``xrdmtl finetune`` does,
    next to a nearest-neighbour vote; every figure also on the labels the physics audit does not
    contradict."""
    hdac: HdacResults = {"available": hd is not None, "cv": {}}
    if hd is None:
        return hdac
    hdac["n"] = len(tests["hdac_unmasked"])
    hdac["splits"] = run.config.hdac_splits
    hdac["synthetic_only"] = {v: settings["mtl"]["metrics"][f"hdac_{v}"] for v in VIEWS}
    # labels the physics-only audit contradicts (model-free, so the same for every model)
    hdac["contradicted"] = {v: contradicted_labels(hd / f"labels_{v}.csv") for v in VIEWS}
    clean = {
        v: np.array([f.name not in hdac["contradicted"][v] for f in tests[f"hdac_{v}"].files])
        for v in VIEWS
    }
    hdac["synthetic_only_uncontradicted"] = {
        v: _synthetic_only_clean(run, tests[f"hdac_{v}"], clean[v], base_models) for v in VIEWS
    }
    tuned = {v: finetuned_cv(run, tests[f"hdac_{v}"], clean[v], base_models, v) for v in VIEWS}
    adapted = {v: adapted_cv(run, tests[f"hdac_{v}"], clean[v], base_models, v) for v in VIEWS}
    hdac["cv"] = {v: tuned[v][0] for v in VIEWS}
    hdac["cv_uncontradicted"] = {v: tuned[v][1] for v in VIEWS}
    hdac["cv_base"] = {v: adapted[v]["cv_base"] for v in VIEWS}
    hdac["cv_base_uncontradicted"] = {v: adapted[v]["cv_base_uncontradicted"] for v in VIEWS}
    hdac["cv_adapted"] = {v: adapted[v]["cv_adapted"] for v in VIEWS}
    hdac["cv_adapted_uncontradicted"] = {v: adapted[v]["cv_adapted_uncontradicted"] for v in VIEWS}
    hdac["cv_vote"] = {v: adapted[v]["cv_vote"] for v in VIEWS}
    return hdac


def _synthetic_only_clean(
    run: Run, hset: LabeledSet, clean: np.ndarray, base_models: dict[int, Path]
) -> CleanSummary:
    """The base models on the patterns whose labels the audit does not contradict."""
    exact = []
    for seed in run.seeds:
        probs, thr = predict_sets(base_models[seed], {"all": hset})
        exact.append(evaluate(probs["all"][clean], hset.labels[clean], thr, run.phases)["exact"])
    return {"exact": Stat.of(exact).to_dict(), "n": int(clean.sum())}


def finetuned_cv(
    run: Run, hset: LabeledSet, clean: np.ndarray, base_models: dict[int, Path], view: str
) -> tuple[list[CvPoint], list[CvPoint]]:
    """The base model fine-tuned on N labeled measured patterns (the splits of
    :func:`~xrdmtl.workflows.crossval.training_draw`, as ``crossval``'s), scored on the others: on
    all of them and on the uncontradicted ones."""
    from xrdmtl.workflows.crossval import training_draw

    config = run.config
    runs: dict[int, list[float]] = {n: [] for n in config.hdac_ns}
    runs_clean: dict[int, list[float]] = {n: [] for n in config.hdac_ns}
    for seed in run.seeds:
        for split in range(config.hdac_splits):
            for n in config.hdac_ns:
                run.bar.update(description=f"cv {view} N={n} seed {seed} split {split}")
                idx = training_draw(hset.labels, n, seed, split)
                folder = run.out / "runs" / f"cv_{view}" / f"n{n}_seed{seed}_split{split}"
                model, was_reused = run_finetune(base_models[seed], hset, idx, seed, config, folder)
                run.reused["finetune_runs"].append(was_reused)
                rest_idx = np.setdiff1d(np.arange(len(hset)), idx)
                rest, keep = _subset(hset, rest_idx), clean[rest_idx]
                probs, thr = predict_sets(model, {"rest": rest})
                p = probs["rest"]
                runs[n].append(evaluate(p, rest.labels, thr, run.phases)["exact"])
                runs_clean[n].append(evaluate(p[keep], rest.labels[keep], thr, run.phases)["exact"])
                run.bar.update(1, description=f"cv {view} N={n} seed {seed} split {split}")
    return _cv_points(runs), _cv_points(runs_clean)


def adapted_cv(
    run: Run, hset: LabeledSet, clean: np.ndarray, base_models: dict[int, Path], view: str
) -> dict[str, list[CvPoint]]:
    """:func:`~xrdmtl.workflows.crossval.crossvalidate` of each seed's base model on the same splits
    as :func:`finetuned_cv`: the base model, the adapted one and the vote (:data:`CV_ROWS`)."""
    from xrdmtl.workflows.crossval import CrossvalPlan, crossvalidate

    config = run.config
    data = LabeledPatterns(hset.intensity, hset.coverage, hset.labels)
    files = [f.name for f in hset.files]
    rows: dict[str, dict[int, list[float]]] = {k: {n: [] for n in config.hdac_ns} for k in CV_ROWS}
    for seed in run.seeds:
        run.bar.update(description=f"cv {view} seed {seed}: adapting")
        plan = CrossvalPlan(config.hdac_ns, config.hdac_splits, seed, leave_one_out=False)
        for scheme in crossvalidate(base_models[seed], data, files, ~clean, plan).schemes:
            for key, (row, uncontradicted) in CV_ROWS.items():
                values = scheme.exact_uncontradicted if uncontradicted else scheme.exact
                rows[key][scheme.n_labeled] += values[row]
    return {key: _cv_points(runs) for key, runs in rows.items()}


# ------------------------------------------------------------------------------------- the record


def _meta(run: Run, command: str | None, started: str, wall_time_s: float) -> Meta:
    """How the run was made: command, configuration, versions, seeds, timings, cache use, machine."""
    from xrdmtl.model.networks import default_device
    from xrdmtl.synthesis.patterns import SynthConfig

    config = run.config
    return {
        "command": command
        or f"run_experiment({str(run.out)!r}, ExperimentConfig.preset({config.preset_name!r}))",
        "preset": config.preset_name,
        "config": config.to_dict(),
        "versions": package_versions(),
        "seeds": run.seeds,
        "phases": run.phases,
        "started": started,
        "wall_time_s": round(wall_time_s, 1),
        "stage_time_s": {k: round(v, 1) for k, v in run.stage.items()},
        "reused_runs": {k: [int(sum(v)), len(v)] for k, v in run.reused.items()},
        "cpus": os.cpu_count() or 1,
        "synth": {
            k: v for k, v in asdict(SynthConfig()).items() if k in ("p_present", "p_unmasked")
        },
        "device": str(default_device()),
    }


def _comparisons(config: ExperimentConfig, losses: Sequence[str], base_loss: str) -> Comparisons:
    """Which settings each comparison sets side by side."""
    return {
        "primary_test_set": "sim_unmasked",
        "base": "mtl",
        "architecture": ["mtl", *[a for a in config.archs if a != "mtl"]],
        "loss": ["mtl", *[f"mtl_{x}" for x in losses if x != base_loss]],
        "tailored_loss": _loss_key(config.tailored_loss, base_loss),
        "plain_loss": _loss_key(config.plain_loss, base_loss),
        "masking": {
            "train": {"mixed": "mtl", **{str(v): f"mtl_{v}_only" for v in VIEWS}},
            "test_sets": [f"sim_{v}" for v in VIEWS],
        },
        "data_efficiency_view": "unmasked",
        "few_n": config.few_n,
    }


def _confusion_sum(parts: Sequence[dict[str, int]]) -> Confusion:
    return {
        "tp": sum(c["tp"] for c in parts),
        "fp": sum(c["fp"] for c in parts),
        "fn": sum(c["fn"] for c in parts),
        "tn": sum(c["tn"] for c in parts),
    }


def _cv_points(runs: dict[int, list[float]]) -> list[CvPoint]:
    """Per N (in order): the exact match over the cross-validation runs."""
    return [
        {"n": n, "exact": Stat.of(values).to_dict(), "runs": len(values)}
        for n, values in runs.items()
    ]


def _loss_key(loss: str, base_loss: str) -> str:
    return "mtl" if loss == base_loss else f"mtl_{loss}"


def contradicted_labels(labels_csv: Path) -> list[str]:
    """Names of the files whose labels the physics-only audit contradicts (peaks against labels)."""
    from xrdmtl.workflows.audit import audit_labels

    table = audit_labels(labels_csv, None, ReadOptions(HDAC_WAVELENGTH), use_model=False)
    return sorted({Path(r.file).name for r in table.flagged})


def _subset(s: LabeledSet, idx: np.ndarray) -> LabeledSet:
    return replace(
        s,
        files=[s.files[i] for i in idx],
        intensity=s.intensity[idx],
        coverage=s.coverage[idx],
        labels=s.labels[idx],
    )


def _per_file(
    s: LabeledSet, probs: np.ndarray, thr: np.ndarray, phases: Sequence[str]
) -> list[PerFile]:
    calls = probs >= thr
    return [
        {
            "file": f.name,
            "labels": {p: int(s.labels[i, j]) for j, p in enumerate(phases)},
            "probs": {p: round(float(probs[i, j]), 4) for j, p in enumerate(phases)},
            "agree": bool((calls[i] == s.labels[i].astype(bool)).all()),
        }
        for i, f in enumerate(s.files)
    ]


def make_examples(
    model_path: Path, tests: dict[str, LabeledSet], k: int, phases: Sequence[str]
) -> list[dict]:
    """Up to ``k`` test patterns per set kind (one per phase where possible), with what drove the call."""
    from xrdmtl.inference.explain import saliency
    from xrdmtl.model.files import load_model
    from xrdmtl.physics.phases import get_phase

    model = load_model(model_path, device="cpu")
    grid = model.grid
    sticks = {}
    for p in phases:
        r = get_phase(p).reflections()
        keep = (r.q >= grid.q_min) & (r.q <= grid.q_max) & (r.intensity >= 2)
        sticks[p] = [
            [round(float(q), 4), round(float(i), 1)]
            for q, i in zip(r.q[keep], r.intensity[keep], strict=True)
        ]
    out = []
    for name in ("sim_unmasked", "hdac_unmasked"):
        if name not in tests:
            continue
        s = tests[name]
        chosen: list[int] = []
        for j in range(len(phases)):
            hit = [i for i in np.flatnonzero(s.labels[:, j]) if i not in chosen]
            if hit and len(chosen) < k:
                chosen.append(int(hit[0]))
        if not chosen:
            continue
        idx = np.array(chosen, dtype=int)
        x = s.x[idx]
        probs = model.predict_proba(x)
        sal = saliency(_LogitMargin.wrap(model.net), x)
        for row, i in enumerate(idx):
            out.append(
                {
                    "test_set": name,
                    "file": s.files[i].name,
                    "q": [round(float(q), 4) for q in grid.values],
                    "signal": [round(float(v), 4) for v in x[row, 1]],
                    "probs": {p: round(float(probs[row, j]), 4) for j, p in enumerate(phases)},
                    "labels": {p: int(s.labels[i, j]) for j, p in enumerate(phases)},
                    "saliency": {
                        p: [round(float(v), 3) for v in sal[row, j]] for j, p in enumerate(phases)
                    },
                    "sticks": sticks,
                }
            )
    return out


class _LogitMargin:
    """Wraps a network returning logits ``(B, T, 2)`` as one returning ``z₁ − z₀`` per phase."""

    @staticmethod
    def wrap(net: Any) -> Any:
        import torch

        class Margin(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                z = self.net(x)
                return z[..., 1] - z[..., 0]

        return Margin()
