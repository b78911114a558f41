"""Training on synthetic batches generated on the fly, fine-tuning on a few labeled patterns.

:func:`train` draws fresh batches from the :class:`~xrdmtl.synthesis.patterns.Synthesizer` in DataLoader worker
processes (generation and SGD overlap on separate cores), validates on a held-out simulated set,
stops early, checkpoints atomically (safetensors + JSON, optimizer included; ``resume=True``
continues), fits a per-phase temperature on another held-out set and writes the model folder with
``metrics.json``, ``metrics.csv`` and ``curves.png``. Batch ``k`` of a run is drawn from
``np.random.default_rng([seed, 0, k])`` whichever worker makes it, so runs and resumed runs are
reproducible. :func:`finetune` mixes augmented labeled patterns into synthetic batches so the model
learns the user's data without forgetting the rest.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from ..atomic import write_bytes
from ..errors import ConfigError, ModelError
from ..model.calibration import expected_calibration_error, fit_temperature
from ..model.files import probabilities, save_model, save_tensors, versions
from ..model.losses import make_loss
from ..model.metrics import evaluate as score
from ..model.networks import Network, build_model, default_device, n_parameters
from ..model.preprocess import model_input, noise_sigma
from ..physics.background import smooth_background
from ..physics.grid import QGrid
from ..progress import ProgressBar
from ..synthesis.patterns import SynthConfig, Synthesizer
from .fit import Batch, FitState, fit

if TYPE_CHECKING:
    from ..physics.phases import Phase
    from ..synthesis.source import PatternSource

VAL_SEED = 1_000_001  # held-out simulated validation set (never a training stream)
CALIB_SEED = 1_000_002  # held-out simulated set for temperature scaling
CHECKPOINT = "checkpoint"


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the model's provenance).

    ``phases``: library names; ``cif``: extra structure files (.cif/.jcpds), their phases appended.
    ``synth``: overrides of :class:`~xrdmtl.synthesis.patterns.SynthConfig` fields; ``unmasked_fraction`` sets
    its ``p_unmasked`` (None keeps the default mix). An evaluation (and checkpoint) every
    ``eval_every`` steps; early stopping after ``patience`` evaluations without a lower validation
    loss (0 disables). ``workers``: generator processes (None: all cores but one, at least 1);
    ``threads``: torch threads for SGD (None: the cores the workers leave, at least 1).
    """

    phases: list[str] = field(default_factory=lambda: ["bastnaesite", "calcite", "rhenium"])
    cif: list[str] = field(default_factory=list)
    arch: str = "mtl"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    loss: str = "smoothed"
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    steps: int = 4000
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    seed: int = 0
    synth: dict[str, Any] = field(default_factory=dict)
    unmasked_fraction: float | None = None
    grid: dict[str, Any] = field(default_factory=lambda: QGrid().to_dict())
    val_size: int = 2000
    calib_size: int = 2000
    eval_every: int = 250
    patience: int = 6
    workers: int | None = None
    threads: int | None = None
    device: str = "auto"
    weights_dtype: str = "float32"

    def __post_init__(self) -> None:
        """Check every setting (a ConfigError names the first that cannot work)."""
        from ..model.losses import LOSSES
        from ..model.networks import ARCHITECTURES

        checks = [
            (self.arch in ARCHITECTURES, f"arch must be one of {', '.join(ARCHITECTURES)}"),
            (self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}"),
            (bool(self.phases or self.cif), "phases (or cif) must name at least one phase"),
            (self.weights_dtype in ("float32", "float16"), "weights_dtype must be float32 or float16"),
            (self.unmasked_fraction is None or 0 <= self.unmasked_fraction <= 1,
             "unmasked_fraction must lie between 0 and 1"),
            (self.lr > 0 and self.weight_decay >= 0, "lr must be positive, weight_decay not negative"),
            (min(self.steps, self.batch_size, self.val_size, self.calib_size, self.eval_every) >= 1,
             "steps, batch_size, val_size, calib_size and eval_every must be at least 1"),
            (min(self.warmup, self.patience, self.workers or 0) >= 0 and (self.threads or 1) >= 1,
             "warmup, patience and workers must not be negative, threads at least 1"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"{message} (TrainConfig)")
        try:
            torch_device(self.device)
        except RuntimeError:
            raise ConfigError(
                f"device must be auto or a torch device (cpu, cuda, cuda:1, …), got {self.device!r}"
            ) from None
        synth_config(self.synth, self.unmasked_fraction)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Rebuild from :func:`dataclasses.asdict` output; an unknown key is a ``ValueError`` naming it
        (a misspelt setting must not be dropped silently)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(
                f"unknown training settings: {', '.join(unknown)} (known: {', '.join(sorted(names))})"
            )
        return cls(**d)


@dataclass
class TrainResult:
    """What a run produced: the model folder, curves and the final validation figures."""

    model_dir: Path
    n_parameters: int
    history: list[list[float]]  # [step, training loss] per step
    # one row per evaluation: step, val_loss, per-phase accuracy, exact match, ...
    evals: list[dict[str, Any]]
    best_step: int
    stopped_early: bool
    calibration: dict[str, Any]
    seconds: float
    timing: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # fine-tuning inputs that could not be read
    # fine-tuning: fitted lattice scales and adapted ranges
    lattice: dict[str, Any] = field(default_factory=dict)
    final: dict[str, float] = field(default_factory=dict)  # the final held-out simulated figures


# ----------------------------------------------------------------------------------- data


def resolve_phases(names: Sequence[str], cif: Sequence[str | Path] = ()) -> list[Phase]:
    """Phases from library names and structure files (:func:`xrdmtl.physics.phases.load_phase`)."""
    from ..physics.phases import load_phase

    return [load_phase(n) for n in names] + [load_phase(Path(p)) for p in cif]


def synth_config(overrides: Mapping[str, Any], unmasked_fraction: float | None) -> SynthConfig:
    """The synthesis settings of a training config: the defaults with ``overrides`` (an unknown
    name is a ConfigError) and ``unmasked_fraction`` as ``p_unmasked`` (unless None)."""
    settings = dict(overrides)
    if unmasked_fraction is not None:
        settings["p_unmasked"] = float(unmasked_fraction)
    unknown = sorted(set(settings) - {f.name for f in fields(SynthConfig)})
    if unknown:
        raise ConfigError(f"unknown synthesis settings: {', '.join(unknown)}")
    return SynthConfig(**settings)


def make_synthesizer(config: TrainConfig) -> Synthesizer:
    """The Synthesizer a config describes."""
    phases = resolve_phases(config.phases, config.cif)
    return Synthesizer(
        phases,
        QGrid.from_dict(config.grid),
        config=synth_config(config.synth, config.unmasked_fraction),
    )


def simulated_set(
    synth: PatternSource, n: int, seed: int | Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` simulated patterns as model input ``(n, C, G)`` and labels ``(n, T)``."""
    batch = synth.sample(n, np.random.default_rng(seed))
    return model_input(batch.intensity, batch.coverage, synth.grid.step), batch.labels


class _Stream(IterableDataset[tuple[torch.Tensor, torch.Tensor]]):
    """Batches ``start, start + 1, …`` (batch ``k`` from ``rng([seed, 0, k])``), split over workers."""

    def __init__(self, synth: PatternSource, seed: int, start: int, batch_size: int) -> None:
        self.synth, self.seed, self.start, self.batch_size = synth, seed, start, batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        k = self.start + (info.id if info else 0)
        step = info.num_workers if info else 1
        while True:
            x, y = simulated_set(self.synth, self.batch_size, [self.seed, 0, k])
            yield torch.from_numpy(x), torch.from_numpy(y)
            k += step


def synthetic_batches(
    synth: PatternSource, seed: int, start: int, batch_size: int, workers: int
) -> Iterator[Batch]:
    """Endless batches from ``start`` on, made in ``workers`` background processes (0: inline)."""
    stream = _Stream(synth, seed, start, batch_size)
    if workers == 0:
        return iter(stream)
    loader = DataLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        prefetch_factor=4,
        generator=torch.Generator().manual_seed(seed),  # leaves the global RNG (dropout) alone
    )
    return iter(loader)


def default_workers() -> int:
    """Generator processes: every core but one for SGD, at least one."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def augment(
    intensity: np.ndarray,
    coverage: np.ndarray,
    rng: np.random.Generator,
    strength: float = 1.0,
    q_step: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Label-preserving variants of measured patterns on a grid.

    Each pattern gets a Q scale of ±0.3 % (strain, calibration) and a Q offset of ±1 grid step
    (zero error), a smooth background change (linear tilt and
    curvature, each up to ±5 % of the pattern's range), Gaussian noise
    of up to twice the pattern's own noise σ (:func:`~xrdmtl.model.preprocess.noise_sigma`: a raw integration
    with 0.03 % noise keeps the weak peaks that make it hard), and the peaks' contrast over the smooth
    background scaled by ×0.7–1.4.
    ``strength`` scales every distortion (0: the patterns unchanged); ``q_step``: the grid's step
    in Å⁻¹ (default: the default grid's), for the background estimate.
    """
    n, g = intensity.shape
    intensity = np.asarray(intensity, dtype=float)
    scale = 1.0 + strength * rng.uniform(-0.003, 0.003, (n, 1))
    shift = strength * rng.uniform(-1.0, 1.0, (n, 1))
    # grid index read for each output point (q_min ≈ origin)
    src = np.arange(g)[None, :] / scale - shift
    lo = np.clip(np.floor(src).astype(int), 0, g - 2)
    frac = np.clip(src - lo, 0.0, 1.0)
    left, right = np.take_along_axis(intensity, lo, 1), np.take_along_axis(intensity, lo + 1, 1)
    out = (1 - frac) * left + frac * right
    cov = (
        np.take_along_axis(coverage, lo, 1)
        & np.take_along_axis(coverage, lo + 1, 1)
        & (src <= g - 1)  # below the first point: its value (an offset of at most one step)
    )
    # peak contrast ×0.7–1.4 over the smooth background
    bg = smooth_background(out, cov, q_step or QGrid().step)
    sigma = noise_sigma(out - bg, cov)
    out = bg + (out - bg) * np.exp(strength * rng.uniform(np.log(0.7), np.log(1.4), (n, 1)))
    span = np.ptp(np.where(cov, out, np.nan), axis=1, keepdims=True)
    span = np.nan_to_num(span, nan=1.0)
    t = np.linspace(-1, 1, g)[None, :]
    out = out + strength * span * (
        rng.uniform(-0.05, 0.05, (n, 1)) * t + rng.uniform(-0.05, 0.05, (n, 1)) * (t**2 - 1 / 3)
    )
    out = out + strength * rng.uniform(0, 2, (n, 1)) * sigma * rng.standard_normal((n, g))
    return np.where(cov, out, 0.0).astype(np.float32), cov


# ------------------------------------------------------------------------------ evaluation


def predict_logits(
    net: torch.nn.Module, x: np.ndarray, device: torch.device, batch: int = 1024
) -> np.ndarray:
    """Logits ``(N, T, 2)`` of ``net`` in eval mode (restores each module's previous mode)."""
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            out.append(net(torch.from_numpy(x[i : i + batch]).to(device)).float().cpu().numpy())
    for module, mode in modes:
        module.training = mode
    return np.concatenate(out)


def evaluate(
    logits: np.ndarray, labels: np.ndarray, phases: Sequence[str], prefix: str = "val"
) -> dict[str, float]:
    """Mean summed cross-entropy, per-phase accuracy and exact match at probability 0.5."""
    p = probabilities(logits)
    y = np.asarray(labels, dtype=bool)
    eps = 1e-7
    ce = -(y * np.log(p + eps) + (~y) * np.log(1 - p + eps)).mean(0).sum()
    ev = score(y, p > 0.5)
    out = {f"{prefix}_loss": float(ce), f"{prefix}_exact": ev.exact_match}
    out.update(
        {f"{prefix}_acc_{name}": float(a) for name, a in zip(phases, ev.accuracy, strict=True)}
    )
    return out


def calibrate(logits: np.ndarray, labels: np.ndarray, phases: Sequence[str]) -> dict[str, Any]:
    """Per-phase temperatures fitted on held-out logits, with the ECE before and after."""
    temperature = fit_temperature(logits, labels)
    before, after = probabilities(logits), probabilities(logits, temperature)
    per = {
        name: {
            "temperature": float(temperature[t]),
            "ece_before": expected_calibration_error(before[:, t], labels[:, t]),
            "ece_after": expected_calibration_error(after[:, t], labels[:, t]),
        }
        for t, name in enumerate(phases)
    }
    return {
        "method": "temperature scaling (Guo et al. 2017) on held-out simulated patterns",
        "temperature": [float(v) for v in temperature],
        "ece_before": expected_calibration_error(before, labels),
        "ece_after": expected_calibration_error(after, labels),
        "n_patterns": int(len(labels)),
        "per_phase": per,
    }


# ----------------------------------------------------------------------------- checkpoints


def _save_checkpoint(
    folder: Path,
    net: torch.nn.Module,
    loss_fn: torch.nn.Module,
    opt: torch.optim.Optimizer,
    best_state: dict[str, torch.Tensor],
    state: dict[str, Any],
) -> None:
    """Write tensors under step-stamped names, then ``state.json`` (atomic) naming them."""
    step = state["step"]
    tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
    tensors.update({f"loss.{k}": v for k, v in loss_fn.state_dict().items()})
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    opt_sd = opt.state_dict()
    scalars = {}
    for idx, st in opt_sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = v
    files = {"weights": f"weights-{step}.safetensors", "best": f"best-{step}.safetensors"}
    save_tensors(folder / files["weights"], tensors)
    save_tensors(folder / files["best"], best_state)
    doc = {**state, "files": files, "param_groups": opt_sd["param_groups"], "opt_scalars": scalars}
    write_bytes(folder / "state.json", json.dumps(doc).encode())
    for f in folder.glob("*.safetensors"):
        if f.name not in files.values():
            f.unlink(missing_ok=True)


def _load_checkpoint(
    folder: Path, net: torch.nn.Module, loss_fn: torch.nn.Module, opt: torch.optim.Optimizer
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore model, loss, optimizer and RNG from ``folder``; returns (state, best weights)."""
    from safetensors.torch import load_file

    try:
        doc = json.loads((folder / "state.json").read_text())
        tensors = load_file(str(folder / doc["files"]["weights"]))
        best = load_file(str(folder / doc["files"]["best"]))
    except Exception as exc:  # any unreadable piece makes the checkpoint unusable
        raise ModelError(
            f"cannot resume from checkpoint: {type(exc).__name__}: {exc}", folder
        ) from exc
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    loss_fn.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("loss.")})
    opt_state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, name = k.split(".", 2)
            opt_state.setdefault(int(idx), {})[name] = v
    for k, v in doc.pop("opt_scalars").items():
        idx, name = k.split(".", 1)
        opt_state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": opt_state, "param_groups": doc.pop("param_groups")})
    torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    return doc, best


# --------------------------------------------------------------------------------- outputs


def write_outputs(
    out: Path, history: list[list[float]], evals: list[dict[str, Any]], summary: dict[str, Any]
) -> None:
    """``metrics.json`` (everything), ``metrics.csv`` (one row per evaluation), ``curves.png``."""
    write_bytes(
        out / "metrics.json",
        (json.dumps({**summary, "evals": evals, "history": history}, indent=1) + "\n").encode(),
    )
    if evals:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(evals[0]))
        writer.writeheader()
        writer.writerows(evals)
        write_bytes(out / "metrics.csv", buf.getvalue().encode())
    _plot_curves(out / "curves.png", history, evals)


def _plot_curves(path: Path, history: list[list[float]], evals: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    if history:
        h = np.asarray(history, dtype=float)
        win = max(1, len(h) // 50)
        smooth = np.convolve(h[:, 1], np.ones(win) / win, mode="valid")
        ax1.plot(h[win - 1 :, 0], smooth, lw=1, label="training (running mean)")
    if evals:
        steps = [e["step"] for e in evals]
        ax1.plot(steps, [e["val_loss"] for e in evals], "o-", ms=3, label="validation (plain CE)")
        for key in [k for k in evals[0] if k.startswith("val_acc_") or k == "val_exact"]:
            ax2.plot(steps, [e[key] for e in evals], "o-", ms=3, label=key[4:].replace("acc_", ""))
    ax1.set(xlabel="step", ylabel="loss", yscale="log", title="loss")
    ax2.set(xlabel="step", ylabel="accuracy", title="validation accuracy (simulated)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def _lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 5 % of ``lr`` at ``steps``."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    t = min(1.0, (step - config.warmup) / max(1, config.steps - config.warmup))
    return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def torch_device(name: str) -> torch.device:
    """The torch device a config names (``auto``: the GPU where there is one)."""
    return default_device() if name == "auto" else torch.device(name)


# ----------------------------------------------------------------------------------- train


def train(
    config: TrainConfig,
    out_dir: str | Path,
    progress: bool = True,
    resume: bool = False,
    synthesizer: PatternSource | None = None,
    extra_val: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> TrainResult:
    """Train a model as ``config`` says and write it to ``out_dir`` (a model folder).

    ``synthesizer``: any :class:`~xrdmtl.synthesis.source.PatternSource` (default: from ``config``).
    ``extra_val``: named ``(model input, labels)`` sets evaluated alongside (e.g. simulated frames or
    labeled measured patterns); reported, never used for training or stopping.
    """
    workers = config.workers if config.workers is not None else default_workers()
    with torch_threads(config.threads or max(1, (os.cpu_count() or 1) - workers)):
        return _train(config, Path(out_dir), progress, resume, synthesizer, extra_val, workers)


@dataclass
class _Model:
    """The network, loss and optimiser of a run, on its device."""

    phases: list[str]
    net: Network
    loss_fn: torch.nn.Module
    opt: torch.optim.Optimizer
    device: torch.device


def _build(config: TrainConfig, synth: PatternSource) -> _Model:
    """Seed torch, then build the network, loss and optimiser ``config`` describes."""
    device = torch_device(config.device)
    torch.manual_seed(config.seed)
    phases = [p.name for p in synth.targets]
    net = build_model(config.arch, phases, synth.grid, **config.arch_kwargs).to(device)
    loss_fn = make_loss(config.loss, len(phases), **config.loss_kwargs).to(device)
    opt = torch.optim.AdamW(
        [*net.parameters(), *loss_fn.parameters()], lr=config.lr, weight_decay=config.weight_decay
    )
    return _Model(phases, net, loss_fn, opt, device)


def _start(ckpt: Path, resume: bool, m: _Model) -> tuple[FitState, dict[str, torch.Tensor]]:
    """The state and best weights to start from: the checkpoint's with ``resume`` (if there is
    one), else a fresh start (an old checkpoint removed)."""
    best = {k: v.detach().clone() for k, v in m.net.state_dict().items()}
    if resume and (ckpt / "state.json").is_file():
        doc, best = _load_checkpoint(ckpt, m.net, m.loss_fn, m.opt)
        return FitState.from_dict(doc), best
    if ckpt.exists():
        shutil.rmtree(ckpt)
    return FitState(), best


@dataclass
class _Validation:
    """What :func:`train` does after each step: every ``eval_every`` steps (and at the last) a
    validation row, the best weights kept, early stopping decided, a checkpoint written."""

    config: TrainConfig
    m: _Model
    x_val: np.ndarray
    y_val: np.ndarray
    extra_val: Mapping[str, tuple[np.ndarray, np.ndarray]] | None
    ckpt: Path
    bar: ProgressBar
    best: dict[str, torch.Tensor]

    def __call__(self, state: FitState) -> bool:
        config, m = self.config, self.m
        if state.step % config.eval_every and state.step != config.steps:
            return False
        t0 = time.perf_counter()
        row = _eval_row(m.net, self.x_val, self.y_val, m.phases, m.device, state, self.extra_val)
        state.timing["eval_s"] += time.perf_counter() - t0
        if row["val_loss"] < state.best_loss * (1 - 1e-3):
            state.best_loss, state.best_step, state.bad_evals = row["val_loss"], state.step, 0
            self.best = {k: v.detach().clone() for k, v in m.net.state_dict().items()}
        else:
            state.bad_evals += 1
        state.stopped_early = bool(config.patience and state.bad_evals >= config.patience)
        _save_checkpoint(self.ckpt, m.net, m.loss_fn, m.opt, self.best, state.to_dict())
        self.bar.update(info=f"val loss {row['val_loss']:.3f} exact {row['val_exact']:.3f}")
        return state.stopped_early


def _train(
    config: TrainConfig,
    out: Path,
    progress: bool,
    resume: bool,
    synthesizer: PatternSource | None,
    extra_val: Mapping[str, tuple[np.ndarray, np.ndarray]] | None,
    workers: int,
) -> TrainResult:
    t_start = time.perf_counter()
    ckpt = out / CHECKPOINT
    synth = synthesizer if synthesizer is not None else make_synthesizer(config)
    m = _build(config, synth)
    state, best = _start(ckpt, resume, m)
    x_val, y_val = simulated_set(synth, config.val_size, VAL_SEED)
    todo = config.steps - state.step if not state.stopped_early else 0
    bar = ProgressBar(config.steps, "training", progress, transient=False)
    bar.update(completed=state.step)
    validation = _Validation(config, m, x_val, y_val, extra_val, ckpt, bar, best)
    batches: Iterator[Batch] = iter(())
    try:
        if todo > 0:
            batches = synthetic_batches(synth, config.seed, state.step, config.batch_size, workers)
        m.net.train()
        fit(
            m.net, m.loss_fn, m.opt, batches, todo,
            lr_at=lambda step: _lr_at(step, config), clipped=list(m.net.parameters()),
            device=m.device, state=state, bar=bar, after_step=validation,
        )  # fmt: skip
    finally:
        del batches  # stops the generator processes
        bar.close()
    m.net.load_state_dict(validation.best)
    return _finish(config, out, synth, m, state, (x_val, y_val), workers, t_start)


def _finish(
    config: TrainConfig,
    out: Path,
    synth: PatternSource,
    m: _Model,
    state: FitState,
    val: tuple[np.ndarray, np.ndarray],
    workers: int,
    t_start: float,
) -> TrainResult:
    """Calibrate the best weights, write the model folder with its provenance and the metrics."""
    x_cal, y_cal = simulated_set(synth, config.calib_size, CALIB_SEED)
    calibration = calibrate(predict_logits(m.net, x_cal, m.device), y_cal, m.phases)
    final = evaluate(predict_logits(m.net, val[0], m.device), val[1], m.phases)
    provenance = {
        "config": asdict(config),
        "steps_run": state.step,
        "best_step": state.best_step,
        "stopped_early": state.stopped_early,
        "phase_sources": _phase_sources(synth),
        "synth_config": asdict(synth.config) if isinstance(synth, Synthesizer) else None,
        "validation": final,
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.perf_counter() - t_start, 1),
        "device": str(m.device),
        "versions": versions(),
    }
    save_model(
        out,
        m.net.cpu(),
        {"calibration": calibration, "training": provenance},
        dtype=config.weights_dtype,
    )
    summary = {
        "n_parameters": n_parameters(m.net),
        "best_step": state.best_step,
        "stopped_early": state.stopped_early,
        "final": final,
        "calibration": calibration,
        "timing": state.timing,
        "workers": workers,
        "config": asdict(config),
    }
    write_outputs(out, state.history, state.evals, summary)
    return TrainResult(
        out,
        n_parameters(m.net),
        state.history,
        state.evals,
        state.best_step,
        state.stopped_early,
        calibration,
        time.perf_counter() - t_start,
        state.timing,
        final=final,
    )


def _phase_sources(synth: PatternSource) -> dict[str, str]:
    """Where each target phase of ``synth`` came from (a library name or a CIF file; "" unknown)."""
    if isinstance(synth, Synthesizer):
        return {p.name: p.source for p in synth.targets}
    return {p.name: "" for p in synth.targets}


def _eval_row(
    net: torch.nn.Module,
    x_val: np.ndarray,
    y_val: np.ndarray,
    phases: Sequence[str],
    device: torch.device,
    state: FitState,
    extra_val: Mapping[str, tuple[np.ndarray, np.ndarray]] | None,
) -> dict[str, float]:
    row = {
        "step": state.step,
        "train_loss": float(np.mean([h[1] for h in state.history[-50:]])),
    }
    row.update(evaluate(predict_logits(net, x_val, device), y_val, phases))
    for name, (x, y) in (extra_val or {}).items():
        row.update(evaluate(predict_logits(net, x, device), y, phases, prefix=name))
    state.evals.append(row)
    return row


# -------------------------------------------------------------------------------- finetune
