"""Model files: a folder with ``model.safetensors`` (weights) and ``model.json`` (phases, grid,
architecture and its arguments, preprocessing, calibration, thresholds, provenance). No pickle.

:func:`save_model` writes one, :func:`load_model` reads it back as a :class:`LoadedModel`;
:func:`default_model_dir` is the model shipped with the package.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from ..atomic import write_bytes
from ..errors import ModelError
from ..physics.grid import QGrid
from .adapter import Adapter, adapter_from
from .networks import Network, build_model, default_device, fuse_batchnorm, n_parameters
from .preprocess import CONTRAST_CHANNEL, N_CHANNELS

FORMAT = "xrdmtl-model"


FORMAT_VERSION = 1


PREPROCESSING_VERSION = 3  # of the model input (model.preprocess.model_input)
PREPROCESSING: dict[str, Any] = {
    "function": "xrdmtl.model.preprocess.model_input",
    "version": PREPROCESSING_VERSION,  # 2 added channel 3; 3 changed its unit (0–2 as in 1)
    "channels": ["minmax", "background_removed", "coverage", "log_contrast"],
}


WEIGHTS_FILE = "model.safetensors"


META_FILE = "model.json"


ADAPTER_FILE = "adapter.safetensors"


def versions() -> dict[str, str]:
    """The versions of the packages a model was made with (xrdmtl, torch, numpy, …)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        own = version("xrdmtl")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        own = "unknown"
    return {
        "xrdmtl": own,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def save_tensors(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Atomically write a safetensors file (contiguous CPU copies of ``tensors``)."""
    from safetensors.torch import save

    data = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    write_bytes(path, save(data, metadata=metadata))


def save_model(
    path: str | Path, net: Network, meta: dict[str, Any] | None = None, dtype: str = "float32"
) -> Path:
    """Write ``path/model.safetensors`` and ``path/model.json``; returns the folder.

    ``meta`` adds to or overrides the generated metadata (``calibration``, ``thresholds``,
    ``training`` provenance...). ``dtype="float16"`` halves the file; weights load back as float32.
    """
    if dtype not in ("float32", "float16"):
        raise ModelError(f"unsupported weights dtype {dtype!r}")
    folder = Path(path)
    n_tasks = len(net.phases)
    doc: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "phases": list(net.phases),
        "grid": net.grid.to_dict(),
        "architecture": {"name": net.arch_name, "kwargs": net.config},
        "preprocessing": PREPROCESSING,
        "calibration": {"temperature": [1.0] * n_tasks},
        "thresholds": [0.5] * n_tasks,
        "n_parameters": n_parameters(net),
        "weights_dtype": dtype,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": versions(),
        **(meta or {}),
    }
    for key in ("thresholds",):
        if len(doc[key]) != n_tasks:
            raise ModelError(f"{key} has {len(doc[key])} values for {n_tasks} phases")
    if len(doc["calibration"].get("temperature", [])) != n_tasks:
        raise ModelError(f"calibration temperature must have one value per phase ({n_tasks})")
    half = dtype == "float16"
    tensors = {
        k: (v.half() if half and v.is_floating_point() else v) for k, v in net.state_dict().items()
    }
    save_tensors(
        folder / WEIGHTS_FILE, tensors, {"format": "pt", "phases": json.dumps(list(net.phases))}
    )
    write_bytes(folder / META_FILE, (json.dumps(doc, indent=1) + "\n").encode())
    return folder


class ProbabilisticModel(Protocol):
    """What a predictor needs of a model: its phases in order, its Q grid, its metadata (per-phase
    ``thresholds``, default 0.5) and the probability of each phase for a batch of model inputs."""

    @property
    def phases(self) -> list[str]: ...

    @property
    def grid(self) -> QGrid: ...

    @property
    def meta(self) -> Mapping[str, Any]: ...

    def predict_proba(self, x: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class NetworkModel(ProbabilisticModel, Protocol):
    """A model whose network can be differentiated (for saliency maps): a :class:`LoadedModel`."""

    @property
    def net(self) -> Network: ...


@dataclass
class LoadedModel:
    """A model read from disk: the network in eval mode on ``device`` and its metadata."""

    net: Network
    meta: dict[str, Any]
    path: Path
    device: torch.device
    adapter: Adapter | None = None  # the user's labeled references (``xrdmtl finetune``)

    @property
    def phases(self) -> list[str]:
        return list(self.net.phases)

    @property
    def grid(self) -> QGrid:
        return self.net.grid

    @property
    def temperature(self) -> np.ndarray:
        """Per-phase temperature dividing the logit difference (1 = uncalibrated)."""
        return np.asarray(self.meta["calibration"]["temperature"], dtype=np.float32)

    @property
    def thresholds(self) -> np.ndarray:
        """Per-phase probability above which a phase is called present."""
        return np.asarray(self.meta["thresholds"], dtype=np.float32)

    def logits(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Raw logits ``(B, T, 2)`` for model input ``x: (B, C, G)``."""
        x = np.asarray(x)
        expected = (N_CHANNELS, self.grid.n)
        if x.ndim != 3 or x.shape[1:] != expected:
            raise ModelError(
                f"input has shape {x.shape}, "
                f"the model expects (batch, {expected[0]}, {expected[1]})",
                self.path,
            )
        out = np.empty((x.shape[0], len(self.phases), 2), dtype=np.float32)
        with torch.inference_mode():
            for i in range(0, x.shape[0], batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size], dtype=np.float32))
                out[i : i + batch_size] = self.net(xb.to(self.device)).float().cpu().numpy()
        return out

    def predict_proba(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Calibrated probability ``(B, T)`` that each phase is present (blended with the
        adapter's reference vote when the model has one)."""
        p = self.network_proba(x, batch_size)
        return p if self.adapter is None else self.adapter.combine(np.asarray(x), p)

    def network_proba(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Calibrated probability ``(B, T)`` of the network alone."""
        return probabilities(self.logits(x, batch_size), self.temperature)


def probabilities(logits: np.ndarray, temperature: np.ndarray | float = 1.0) -> np.ndarray:
    """P(present) from logits ``(..., T, 2)`` with per-phase ``temperature``: σ((z₁ − z₀) / T)."""
    d = (logits[..., 1] - logits[..., 0]) / np.asarray(temperature, dtype=np.float32)
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(d, -60, 60))), dtype=np.float32)


def model_files(path: str | Path) -> tuple[Path, Path]:
    """(weights, metadata) paths of a model folder or of its ``.safetensors`` file."""
    p = Path(path)
    if p.suffix == ".safetensors":
        return p, p.with_suffix(".json")
    return p / WEIGHTS_FILE, p / META_FILE


def _numbers(values: Any, n: int) -> bool:
    """A list of ``n`` finite real numbers (not booleans)."""
    return (
        isinstance(values, list)
        and len(values) == n
        and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in values
        )
    )


def _validate_meta(meta: dict[str, Any], what: str, path: str | Path) -> None:
    """Check (and complete with defaults) the fields of ``model.json`` that prediction relies on:
    phases, thresholds in [0, 1], positive temperatures, the Q grid, the preprocessing version."""
    version = meta.get("format_version", FORMAT_VERSION)
    if meta.get("format", FORMAT) != FORMAT:
        raise ModelError(f"{what}: format {str(meta['format'])[:40]!r} is not {FORMAT!r}", path)
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise ModelError(
            f"{what}: model format version {str(version)[:20]}, this xrdmtl reads version "
            f"{FORMAT_VERSION} and older: use the xrdmtl that wrote it, or a newer one",
            path,
        )
    phases = meta["phases"]
    if (
        not isinstance(phases, list)
        or not phases
        or not all(isinstance(p, str) and p for p in phases)
    ):
        raise ModelError(f"{what}: 'phases' must be a non-empty list of names", path)
    if len(set(phases)) != len(phases):
        raise ModelError(f"{what}: 'phases' names a phase twice", path)
    n = len(phases)
    if not isinstance(meta.setdefault("calibration", {}), dict):
        raise ModelError(f"{what}: 'calibration' must be a JSON object", path)
    temperature = meta["calibration"].setdefault("temperature", [1.0] * n)
    if not _numbers(temperature, n) or not all(t > 0 for t in temperature):
        raise ModelError(
            f"{what}: calibration temperature must list one positive number per phase ({n}), "
            f"got {str(temperature)[:80]}",
            path,
        )
    thresholds = meta.setdefault("thresholds", [0.5] * n)
    if not _numbers(thresholds, n) or not all(0.0 <= t <= 1.0 for t in thresholds):
        raise ModelError(
            f"{what}: thresholds must list one number in [0, 1] per phase ({n}), "
            f"got {str(thresholds)[:80]}",
            path,
        )
    grid = meta["grid"]
    ok = (
        isinstance(grid, dict)
        and {"q_min", "q_max", "n"} <= set(grid)
        and _numbers([grid["q_min"], grid["q_max"], grid["n"]], 3)
    )
    if (
        not ok
        or not (0 <= grid["q_min"] < grid["q_max"])
        or grid["n"] != int(grid["n"])
        or grid["n"] < 16
    ):
        raise ModelError(
            f"{what}: grid must be {{q_min, q_max, n}} with 0 ≤ q_min < q_max and an integer "
            f"n ≥ 16, got {str(grid)[:80]}",
            path,
        )
    prep = meta.get("preprocessing", PREPROCESSING)
    version = prep.get("version") if isinstance(prep, dict) else None
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelError(
            f"{what}: preprocessing must be a JSON object with an integer version", path
        )
    if version > PREPROCESSING_VERSION:
        raise ModelError(
            f"model uses preprocessing version {version}, this xrdmtl has {PREPROCESSING_VERSION}",
            path,
        )
    arch = meta.get("architecture")
    kwargs = arch.get("kwargs") if isinstance(arch, dict) else None
    channels = kwargs.get("input_channels", [CONTRAST_CHANNEL]) if isinstance(kwargs, dict) else []
    if version == 2 and isinstance(channels, list) and CONTRAST_CHANNEL in channels:
        raise ModelError(
            f"{what}: the model reads the contrast channel of preprocessing version 2, whose unit "
            f"version {PREPROCESSING_VERSION} changed; retrain it with `xrdmtl train`",
            path,
        )


def read_meta(path: str | Path) -> dict[str, Any]:
    """The validated ``model.json`` of a model folder (or of its ``.safetensors`` file)."""
    _, meta_path = model_files(path)
    if not meta_path.is_file():
        raise ModelError(
            f"no model metadata {meta_path.name} "
            f"(a model is a folder with {WEIGHTS_FILE} and {META_FILE})",
            path,
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"corrupt metadata {meta_path.name}: {exc}", path) from exc
    if not isinstance(meta, dict):
        raise ModelError(f"corrupt metadata {meta_path.name}: not a JSON object", path)
    for key in ("phases", "grid", "architecture"):
        if key not in meta:
            raise ModelError(f"metadata {meta_path.name} lacks {key!r}", path)
    _validate_meta(meta, f"metadata {meta_path.name}", path)
    return meta


def _check_weights_phases(weights: Path, phases: list[str], path: str | Path) -> None:
    """:class:`ModelError` where the weights say which phases (in which order) they were trained
    for and model.json lists others: every call would go to the wrong phase."""
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as fh:
        stored = (fh.metadata() or {}).get("phases")
    try:
        trained = json.loads(stored) if stored else None
    except ValueError:
        trained = None
    if isinstance(trained, list) and trained != list(phases):
        raise ModelError(
            f"{META_FILE} lists the phases {', '.join(map(str, phases))} but the weights were "
            f"trained for {', '.join(map(str, trained))} (in that order): restore {META_FILE}",
            path,
        )


def load_model(
    path: str | Path, device: str | torch.device | None = None, fuse: bool = True
) -> LoadedModel:
    """Read a model folder (or its ``.safetensors`` file); :class:`ModelError` if anything is off.

    ``fuse`` folds BatchNorm into the convs (faster inference); pass ``False`` to train further.
    """
    from safetensors.torch import load_file

    weights_path, _ = model_files(path)
    meta = read_meta(path)
    if not weights_path.is_file():
        raise ModelError(f"no weights file {weights_path.name}", path)
    arch = meta["architecture"]
    try:
        grid = QGrid.from_dict(meta["grid"])
        net = build_model(arch["name"], meta["phases"], grid, **arch.get("kwargs", {}))
    except ModelError as exc:
        raise ModelError(exc.reason, path) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(
            f"incompatible architecture in metadata: {type(exc).__name__}: {exc}", path
        ) from exc
    try:
        state = load_file(str(weights_path))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise ModelError(f"corrupt weights file {weights_path.name}: {exc}", path) from exc
    _check_weights_phases(weights_path, meta["phases"], path)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise ModelError(
            f"weights do not match the architecture ({len(missing)} missing, "
            f"{len(unexpected)} unexpected tensors, e.g. {what})",
            path,
        )
    for key, ref in expected.items():
        if tuple(state[key].shape) != tuple(ref.shape):
            raise ModelError(
                f"weights do not match the architecture: {key!r} has shape "
                f"{tuple(state[key].shape)}, expected {tuple(ref.shape)}",
                path,
            )
    net.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    dev = torch.device(device) if device is not None else default_device()
    net.to(dev).eval()
    if fuse:
        fuse_batchnorm(net)
    adapter = None
    if meta.get("adapter") is not None:
        if not isinstance(meta["adapter"], dict):
            raise ModelError("metadata 'adapter' must be a JSON object", path)
        adapter = adapter_from(meta["adapter"], weights_path.parent, len(meta["phases"]))
    return LoadedModel(net=net, meta=meta, path=Path(path), device=dev, adapter=adapter)


def save_adapted(
    path: str | Path, base: str | Path, adapter: Adapter, meta: dict[str, Any]
) -> Path:
    """Write the model at ``base`` with ``adapter`` to the folder ``path``: the base weights,
    ``adapter.safetensors`` (reference features and labels) and ``model.json`` with the adapter's
    settings and ``meta`` merged in. Returns the folder."""
    from safetensors.numpy import save

    weights, _ = model_files(base)
    doc = {**read_meta(base), **meta, "adapter": adapter.settings(ADAPTER_FILE)}
    folder = Path(path)
    write_bytes(folder / ADAPTER_FILE, save(adapter.tensors(), metadata={"format": "np"}))
    write_bytes(folder / WEIGHTS_FILE, weights.read_bytes())
    write_bytes(folder / META_FILE, (json.dumps(doc, indent=1) + "\n").encode())
    return folder


def default_model_dir() -> Path:
    """Folder of the model shipped with the package."""
    return Path(str(resources.files("xrdmtl") / "data" / "models" / "default"))
