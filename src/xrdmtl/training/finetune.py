"""Fine-tuning a trained model on labeled measured patterns (with simulated patterns adapted to them)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, LabelsError, ModelError
from ..io.labels import LabeledPatterns, load_labeled
from ..io.read import ReadOptions, checked_options
from ..model.files import load_model, read_meta, save_model
from ..model.losses import make_loss
from ..model.networks import Network, n_parameters
from ..model.preprocess import model_input
from ..physics.grid import QGrid
from ..physics.phases import Phase
from ..progress import ProgressBar
from ..synthesis.patterns import Synthesizer
from ..synthesis.source import PatternSource
from .fit import FitState, fit
from .train import (
    CALIB_SEED,
    VAL_SEED,
    TrainConfig,
    TrainResult,
    augment,
    calibrate,
    default_workers,
    evaluate,
    make_synthesizer,
    predict_logits,
    simulated_set,
    synthetic_batches,
    torch_device,
    torch_threads,
    write_outputs,
)

LAYERS = ("heads", "top", "all")  # what fine-tuning may train (see _trainable)


@dataclass(frozen=True)
class FinetuneConfig:
    """The fine-tuning recipe: everything besides the data and the base model that decides the result
    (see :func:`finetune` for what each does). The experiment keys its cached runs by it."""

    steps: int = 300
    batch_size: int = 64
    real_fraction: float = 0.5  # of each batch: augmented labeled patterns (the rest synthetic)
    lr: float = 1e-3
    seed: int = 0
    adapt_lattice: bool = False
    lattice_halfwidth: float = 0.004
    augment_strength: float = 1.0
    train_layers: str = "heads"  # heads | all | top

    def __post_init__(self) -> None:
        """Check every setting (a ConfigError names the first that cannot work)."""
        checks = [
            (self.steps >= 1 and self.batch_size >= 2, "steps must be at least 1, batch_size 2"),
            (0 <= self.real_fraction <= 1, "real_fraction must lie between 0 and 1"),
            (
                self.lr > 0 and self.lattice_halfwidth > 0,
                "lr and lattice_halfwidth must be positive",
            ),
            (self.augment_strength >= 0, "augment_strength must not be negative"),
            (self.train_layers in LAYERS, f"train_layers must be one of {', '.join(LAYERS)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"{message} (FinetuneConfig)")


def fit_lattice_scales(
    patterns: LabeledPatterns,
    phases: Sequence[Phase],
    grid: QGrid,
    wavelength: float | None = None,
    min_patterns: int = 2,
) -> dict[str, dict[str, Any]]:
    """Each phase's lattice scale fitted to the labeled patterns in which it is labeled present.

    Peaks are matched per pattern with :func:`xrdmtl.physics.peaks.match_all` (which grid-searches the
    scale within the phase's ``priors.lattice_range`` and refines it by least squares); a pattern
    counts when the phase's evidence reaches the peak-match threshold with at least two matched
    reflections. Returns, per phase with at least ``min_patterns`` such patterns: ``scale`` (median,
    relative to the phase's cell), ``sd`` (robust, from the MAD), ``n_patterns`` and ``scales``.
    """
    from ..physics.pattern import Pattern
    from ..physics.peaks import THRESHOLD, find_pattern_peaks, match_all

    per: dict[str, list[float]] = {p.name: [] for p in phases}
    labels = np.asarray(patterns.labels)
    for i in np.flatnonzero(labels.any(1)):
        cov = np.asarray(patterns.coverage[i], bool)
        if cov.sum() < 16:
            continue
        pattern = Pattern(grid.values[cov], np.asarray(patterns.intensity[i], float)[cov], "q_A^-1")
        evidence = match_all(find_pattern_peaks(pattern), phases, wavelength)
        for k, phase in enumerate(phases):
            ev = evidence[phase.name]
            if labels[i, k] and ev.score >= THRESHOLD and len(ev.matched) >= 2:
                per[phase.name].append(float(ev.lattice_scale))
    out = {}
    for name, scales in per.items():
        if len(scales) >= min_patterns:
            v = np.array(scales)
            out[name] = {
                "scale": round(float(np.median(v)), 5),
                "sd": round(float(1.4826 * np.median(np.abs(v - np.median(v)))), 5),
                "n_patterns": len(v),
                "scales": [round(x, 5) for x in v.tolist()],
            }
    return out


def adapt_synthesizer(
    synth: Synthesizer, fitted: Mapping[str, Mapping[str, Any]], halfwidth: float = 0.004
) -> tuple[Synthesizer, dict[str, list[float]]]:
    """A copy of ``synth`` whose targets draw their lattice scale from ``fitted[name]['scale'] ±
    halfwidth`` (kept inside the range ``synth`` draws the phase from); targets without a fit keep
    their range. The adapted ranges are the synthesis' per-phase overrides
    (``SynthConfig.lattice_ranges``, by exact name), taken as they are.

    Returns the new synthesizer and, per adapted phase, the range it now draws from.
    """
    overrides = dict(synth.config.lattice_ranges)
    ranges = {}
    for i, phase in enumerate(synth.targets):
        fit = fitted.get(phase.name)
        if fit is None:
            continue
        lo, hi = (float(v) for v in synth.lattice_ranges[i])  # what the synthesis draws from now
        s = float(fit["scale"])
        new = (max(lo, s - halfwidth), min(hi, s + halfwidth))
        overrides[phase.name] = new
        ranges[phase.name] = [round(new[0], 5), round(new[1], 5)]
    new_synth = type(synth)(
        synth.targets,
        synth.grid,
        distractors=synth.distractors,
        config=replace(synth.config, lattice_ranges=overrides),
        chunk=synth.chunk,
        workers=synth.workers,
    )
    return new_synth, ranges


FINETUNE_VERSION = (
    2  # raised whenever fine-tuning changes beyond its arguments (2: BatchNorm frozen)
)


def _freeze_batchnorm(net: torch.nn.Module) -> None:
    """Keep every BatchNorm's running statistics as trained: in train mode they would drift towards
    the fine-tuning batches, half of them a few measured patterns drawn over and over, and change the
    frozen trunk's features for every input."""
    for module in net.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.eval()


def _trainable(net: torch.nn.Module, layers: str) -> list[torch.nn.Parameter]:
    """The parameters fine-tuning updates: ``all``, ``heads`` (everything but the convolutional
    trunk) or ``top`` (the heads and the trunk's last layer); the others are frozen."""
    params = dict(net.named_parameters())
    if layers == "all":
        return list(params.values())
    trunk = [k for k in params if k.startswith("trunk.")]
    last = trunk[-2:] if layers == "top" else []  # weight and bias of the last trunk layer
    for k in trunk:
        if k not in last:
            params[k].requires_grad_(False)
    return [p for p in params.values() if p.requires_grad]


def finetune(
    model_path: str | Path,
    patterns: LabeledPatterns | str | Path,
    out_dir: str | Path,
    *,
    steps: int = 300,
    batch_size: int = 64,
    real_fraction: float = 0.5,
    lr: float = 1e-3,
    seed: int = 0,
    options: ReadOptions | None = None,
    workers: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    note: Callable[[str], None] | None = None,
    synthesizer: PatternSource | None = None,
    adapt_lattice: bool = False,
    lattice_halfwidth: float = 0.004,
    augment_strength: float = 1.0,
    exclude: np.ndarray | Sequence[bool] | Collection[str] | None = None,
    train_layers: str = "heads",
) -> TrainResult:
    """Fine-tune the model at ``model_path`` on a few labeled patterns and write it to ``out_dir``.

    ``patterns``: arrays on the model's grid (:class:`LabeledPatterns`) or a labels CSV (files read
    with ``options``, as ``predict`` reads them; unreadable files are listed in ``result.skipped``).
    Each batch holds ``real_fraction`` augmented labeled patterns (drawn with replacement, see
    :func:`augment`, ``augment_strength``) and synthetic ones from the model's own synthesis
    settings (or ``synthesizer``), so the model does not forget.

    Each phase's lattice scale is fitted to the labeled patterns in which it is labeled present
    (:func:`fit_lattice_scales`; recorded in ``model.json`` as ``lattice_scales`` and in
    ``result.lattice``); ``adapt_lattice`` also draws the synthetic patterns' scale from the fit ±
    ``lattice_halfwidth`` (:func:`adapt_synthesizer`). Off by default: on the paper's 29 HDAC
    patterns the fitted scales sit within 0.1 % of the bundled cells and adapting changed no
    cross-validated result (docs in ``crossval``). ``exclude``: patterns left out of training, a bool
    per pattern or file names as the labels CSV resolves them (e.g. the audit's contradicted ones).
    """
    recipe = FinetuneConfig(
        steps,
        batch_size,
        real_fraction,
        lr,
        seed,
        adapt_lattice,
        lattice_halfwidth,
        augment_strength,
        train_layers,
    )
    workers = workers if workers is not None else default_workers()
    with torch_threads(threads or max(1, (os.cpu_count() or 1) - workers)):
        return _finetune(
            Path(model_path),
            patterns,
            Path(out_dir),
            recipe,
            checked_options(options),
            workers=workers,
            progress=progress,
            note=note,
            synthesizer=synthesizer,
            exclude=exclude,
        )


def _finetune(
    model_path: Path,
    patterns: LabeledPatterns | str | Path,
    out: Path,
    recipe: FinetuneConfig,
    read: ReadOptions,
    *,
    workers: int,
    progress: bool,
    note: Callable[[str], None] | None,
    synthesizer: PatternSource | None,
    exclude: np.ndarray | Sequence[bool] | Collection[str] | None,
) -> TrainResult:
    t_start = time.perf_counter()
    base = load_model(model_path, device="cpu", fuse=False)
    meta = read_meta(model_path)
    phases, grid = base.phases, base.grid
    real, files, skipped = _labeled(patterns, phases, grid, read, note)
    config = TrainConfig.from_dict(
        meta.get("training", {}).get("config", {"phases": phases, "grid": grid.to_dict()})
    )
    synth = synthesizer if synthesizer is not None else make_synthesizer(config)
    if [p.name for p in synth.targets] != phases:
        raise ModelError(
            f"cannot rebuild the synthesis of the model's phases {', '.join(phases)}", model_path
        )
    synth, lattice = _lattice(real, synth, grid, recipe, read, note)
    keep = _kept(exclude, files, len(real.labels))
    device = torch_device(config.device)
    net = base.net.to(device).train()
    _freeze_batchnorm(net)
    trainable = _trainable(net, recipe.train_layers)
    loss_fn = make_loss(config.loss, len(phases), **config.loss_kwargs).to(device)
    opt = torch.optim.AdamW(
        [*trainable, *loss_fn.parameters()], lr=recipe.lr, weight_decay=config.weight_decay
    )
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng([recipe.seed, 1])
    n_real = max(1, round(recipe.batch_size * recipe.real_fraction))
    x_val, y_val = simulated_set(synth, min(config.val_size, 1000), VAL_SEED)
    before = evaluate(predict_logits(net, x_val, device), y_val, phases)
    state = FitState()
    bar = ProgressBar(recipe.steps, "fine-tuning", progress, transient=False)

    def show_loss(st: FitState) -> bool:
        bar.update(info=f"loss {st.history[-1][1]:.3f}")
        return False

    synthetic = synthetic_batches(synth, recipe.seed + 7919, 0, recipe.batch_size - n_real, workers)
    batches = _mixed_batches(
        synthetic, real, np.flatnonzero(keep), n_real, rng, recipe.augment_strength, grid
    )
    try:
        fit(
            net, loss_fn, opt, batches, recipe.steps,
            lr_at=lambda step: recipe.lr * 0.5 * (1 + math.cos(math.pi * step / recipe.steps)),
            clipped=trainable, device=device, state=state, bar=bar, after_step=show_loss,
        )  # fmt: skip
    finally:
        del batches, synthetic  # stops the generator processes
        bar.close()
    run = _Run(
        model_path,
        read,
        recipe,
        config,
        phases,
        real,
        files,
        skipped,
        keep,
        lattice,
        before,
        t_start,
    )
    return _save_finetuned(out, net, synth, (x_val, y_val), meta, state, run, device)


def _labeled(
    patterns: LabeledPatterns | str | Path,
    phases: Sequence[str],
    grid: QGrid,
    read: ReadOptions,
    note: Callable[[str], None] | None,
) -> tuple[LabeledPatterns, list[str], list[str]]:
    """The labeled patterns as arrays on the model's grid (read from a labels CSV, or checked),
    the files read and a line per file skipped."""
    files: list[str] = []
    skipped: list[str] = []
    if isinstance(patterns, (str, Path)):
        patterns, files, skipped = load_labeled(patterns, phases, grid, read, note)
        for line in skipped:
            if note is not None:
                note(f"skipped: {line}")
    real = LabeledPatterns(
        np.asarray(patterns.intensity, np.float32),
        np.asarray(patterns.coverage, bool),
        np.asarray(patterns.labels, np.uint8),
    )
    if real.intensity.shape != real.coverage.shape or real.intensity.shape[1] != grid.n:
        raise LabelsError(
            f"patterns must be on the model's grid ({grid.n} points), got {real.intensity.shape}"
        )
    if real.labels.shape != (len(real.intensity), len(phases)):
        raise LabelsError(
            f"labels must be (n, {len(phases)}) for phases {', '.join(phases)}, got {real.labels.shape}"
        )
    return real, files, skipped


def _lattice(
    real: LabeledPatterns,
    synth: PatternSource,
    grid: QGrid,
    recipe: FinetuneConfig,
    read: ReadOptions,
    note: Callable[[str], None] | None,
) -> tuple[PatternSource, dict[str, Any]]:
    """For a Synthesizer of library/CIF phases: each phase's lattice scale fitted to the labeled
    patterns and, with ``recipe.adapt_lattice``, the synthesis drawing around it. Returns the
    synthesizer to fine-tune with and what was fitted ({} for another generator)."""
    if not isinstance(synth, Synthesizer):
        return synth, {}
    fitted = fit_lattice_scales(real, synth.targets, grid, read.wavelength)
    ranges: dict[str, list[float]] = {}
    if recipe.adapt_lattice:
        synth, ranges = adapt_synthesizer(synth, fitted, recipe.lattice_halfwidth)
    for name, found in fitted.items():
        if note is not None:
            note(
                f"{name}: lattice scale {found['scale']:.4f} ± {found['sd']:.4f} from "
                f"{found['n_patterns']} labeled patterns"
                + (f"; synthesis draws {ranges[name]}" if name in ranges else "")
            )
    lattice = {
        "fitted": fitted,
        "adapted": bool(recipe.adapt_lattice),
        "ranges": ranges,
        "halfwidth": recipe.lattice_halfwidth,
    }
    return synth, lattice


def _kept(
    exclude: np.ndarray | Sequence[bool] | Collection[str] | None, files: Sequence[str], n: int
) -> np.ndarray:
    """Which of the ``n`` labeled patterns fine-tuning trains on: all but ``exclude`` (a bool per
    pattern, or file names as the labels CSV resolves them, which needs the patterns read from a
    CSV: arrays carry no names). A name that is no labeled file is a LabelsError, not ignored."""
    if exclude is None or len(exclude) == 0:
        return np.ones(n, bool)
    if all(isinstance(e, (str, Path)) for e in exclude):
        names = {str(e) for e in exclude}
        if not files:
            raise LabelsError(
                "exclude names files, but the patterns came as arrays: give a bool per pattern"
            )
        unknown = sorted(names - set(files))
        if unknown:
            raise LabelsError(f"exclude names no labeled file: {', '.join(unknown)}")
        keep = np.array([f not in names for f in files], bool)
    else:
        keep = ~np.asarray(exclude, bool)
    if keep.shape != (n,):
        raise LabelsError(f"exclude must hold a bool per labeled pattern ({n}), got {keep.shape}")
    if not keep.any():
        raise LabelsError("no labeled pattern left to fine-tune on after exclusions")
    return keep


def _mixed_batches(
    synthetic: Iterator[tuple[torch.Tensor, torch.Tensor]],
    real: LabeledPatterns,
    train_idx: np.ndarray,
    n_real: int,
    rng: np.random.Generator,
    strength: float,
    grid: QGrid,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless batches of ``n_real`` augmented labeled patterns (drawn with replacement from
    ``train_idx``) followed by a synthetic batch."""
    while True:
        xs, ys = next(synthetic)
        pick = train_idx[rng.integers(0, len(train_idx), n_real)]
        xr = model_input(
            *augment(real.intensity[pick], real.coverage[pick], rng, strength, grid.step),
            grid.step,
        )
        yield (
            torch.cat([torch.from_numpy(xr), xs]),
            torch.cat([torch.from_numpy(real.labels[pick]), ys]),
        )


@dataclass(frozen=True)
class _Run:
    """What one fine-tuning run started from and measured before training (for its provenance)."""

    model_path: Path
    read: ReadOptions
    recipe: FinetuneConfig
    config: TrainConfig  # the base model's training settings
    phases: list[str]
    real: LabeledPatterns
    files: list[str]
    skipped: list[str]
    keep: np.ndarray
    lattice: dict[str, Any]
    before: dict[str, float]
    t_start: float


def _save_finetuned(
    out: Path,
    net: Network,
    synth: PatternSource,
    val: tuple[np.ndarray, np.ndarray],
    meta: dict[str, Any],
    state: FitState,
    run: _Run,
    device: torch.device,
) -> TrainResult:
    """Calibrate, score and write the fine-tuned model with its provenance and metrics."""
    phases, grid, recipe, real = run.phases, synth.grid, run.recipe, run.real
    x_cal, y_cal = simulated_set(synth, min(run.config.calib_size, 1000), CALIB_SEED)
    calibration = calibrate(predict_logits(net, x_cal, device), y_cal, phases)
    after = evaluate(predict_logits(net, val[0], device), val[1], phases)
    labeled = evaluate(
        predict_logits(net, model_input(real.intensity, real.coverage, grid.step), device),
        real.labels,
        phases,
        "labeled",
    )
    training = meta.get("training", {})
    provenance = {
        **training,
        "finetune": {
            "version": FINETUNE_VERSION,
            "from": str(run.model_path),
            "n_labeled": int(len(real.labels)),
            "n_excluded": int((~run.keep).sum()),
            "files": run.files,
            "skipped": run.skipped,
            "steps": recipe.steps,
            "batch_size": recipe.batch_size,
            "real_fraction": recipe.real_fraction,
            "lr": recipe.lr,
            "seed": recipe.seed,
            "wavelength": run.read.wavelength,
            "augment_strength": recipe.augment_strength,
            "train_layers": recipe.train_layers,
            "lattice_adaptation": run.lattice or None,
            "synthetic_before": run.before,
            "synthetic_after": after,
            "labeled_after": labeled,
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(time.perf_counter() - run.t_start, 1),
        },
    }
    save_model(
        out,
        net.cpu().eval(),
        {
            "calibration": calibration,
            "thresholds": meta["thresholds"],
            "training": provenance,
            **({"lattice_scales": run.lattice["fitted"]} if run.lattice else {}),
        },
        dtype=meta.get("weights_dtype", "float32"),
    )
    evals = [{"step": recipe.steps, **after, **labeled}]
    summary = {
        "n_parameters": n_parameters(net),
        "synthetic_before": run.before,
        "final": after,
        "labeled": labeled,
        "calibration": calibration,
        "skipped": run.skipped,
    }
    write_outputs(out, state.history, evals, summary)
    return TrainResult(
        out,
        n_parameters(net),
        state.history,
        evals,
        recipe.steps,
        False,
        calibration,
        time.perf_counter() - run.t_start,
        skipped=run.skipped,
        lattice=run.lattice,
        final=after,
    )
