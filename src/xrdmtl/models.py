"""Networks over the model input ``(batch, channels, grid.n)`` and their safetensors + JSON files.

Every architecture maps ``x: (B, C, G)`` to logits ``(B, T, 2)`` (absent, present), ``T`` phases:

- ``mtl`` (:class:`MultiTaskCNN`, the default): one shared 1D conv trunk (conv–BN–ReLU–max-pool
  blocks, so a peak moved by a few grid points changes little) and, per phase, attention pooling over the
  coarse Q positions (a learned query and a learned positional prior per phase: phases look where
  their reflections are) plus global max pooling, then a small dense head.
- ``binary`` (:class:`BinaryCNNs`): one network of the same family per phase, each narrower so that
  the whole has about the parameters of the multi-task network (the comparison's parameter budget).
- ``paper`` (:class:`PaperCNN`): Li et al. (arXiv 2403.10042): two Conv1d layers (8 and 32 channels,
  kernel 11, stride 2, each followed by max pooling), flattened, and per phase a 1024–256–64–2 dense
  head with dropout. By default it sees the min–max channel only, as the paper's input.

A model on disk is a folder with ``model.safetensors`` (weights) and ``model.json`` (phases, grid,
architecture and its arguments, preprocessing, calibration, thresholds, provenance). No pickle.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .atomic import write_bytes
from .errors import ModelError
from .grid import DEFAULT_GRID, QGrid
from .preprocess import N_CHANNELS

FORMAT = "xrdmtl-model"
FORMAT_VERSION = 1
PREPROCESSING = {
    "function": "xrdmtl.preprocess.model_input",
    "version": 2,  # 2 added channel 3; channels 0–2 are those of version 1
    "channels": ["minmax", "background_removed", "coverage", "log_contrast"],
}
WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def n_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


class _Arch(nn.Module):
    """Common part of the architectures: phases, grid, input channels, JSON-able arguments."""

    arch_name = ""

    def __init__(
        self, phases: Sequence[str], grid: QGrid, input_channels: Sequence[int], config: dict
    ) -> None:
        super().__init__()
        phases = [str(p) for p in phases]
        if not phases or len(set(phases)) != len(phases):
            raise ValueError(f"phases must be non-empty and unique, got {phases}")
        channels = [int(c) for c in input_channels]
        if not channels or not all(0 <= c < N_CHANNELS for c in channels):
            raise ValueError(f"input_channels must lie in 0..{N_CHANNELS - 1}, got {channels}")
        self.phases = phases
        self.grid = grid
        self.config = {**config, "input_channels": channels}
        self.register_buffer(
            "_channels", torch.tensor(channels, dtype=torch.long), persistent=False
        )
        self._all_channels = channels == list(range(N_CHANNELS))

    def select(self, x: torch.Tensor) -> torch.Tensor:
        """The input channels this network uses."""
        return x if self._all_channels else x.index_select(1, self._channels)


class ConvTrunk(nn.Module):
    """Space-to-depth stem, then blocks conv(k, 'same') – BN – max-pool(2) – ReLU.

    The stem folds ``fold`` neighbouring grid points into channels (``(B, C, G)`` →
    ``(B, C·fold, G/fold)``): the first conv still sees every point and can place a peak within its
    window, at a fraction of the cost of a strided conv on a few channels. The convs run as ``(1, k)``
    Conv2d on channels-last tensors, which oneDNN executes several times faster on CPU than Conv1d.
    Output: position-major features ``(B, L, channels[-1])``.
    """

    def __init__(
        self, in_ch: int, channels: Sequence[int], kernels: Sequence[int], fold: int
    ) -> None:
        super().__init__()
        if len(channels) != len(kernels) or not channels:
            raise ValueError("channels and kernels must be non-empty and of the same length")
        self.fold = int(fold)
        layers: list[nn.Module] = []
        c_in = in_ch * self.fold
        for c, k in zip(channels, kernels, strict=True):
            layers += [
                nn.Conv2d(c_in, c, (1, k), padding=(0, k // 2), bias=False),
                nn.BatchNorm2d(c),
                nn.MaxPool2d((1, 2)),
                nn.ReLU(inplace=True),
            ]
            c_in = c
        self.blocks = nn.Sequential(*layers).to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, n = x.shape
        if n % self.fold:
            x = nn.functional.pad(x, (0, self.fold - n % self.fold))
        x = x.reshape(b, c, -1, self.fold).transpose(2, 3).reshape(b, c * self.fold, 1, -1)
        x = x.contiguous(memory_format=torch.channels_last)
        return self.blocks(x).permute(0, 2, 3, 1).flatten(1, 2)


def fuse_batchnorm(net: nn.Module) -> nn.Module:
    """Fold every trunk BatchNorm into the conv before it (eval mode only; ~20 % faster on CPU).

    The outputs are unchanged up to float rounding; the fused network is for inference only.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net.eval()
    for trunk in (m for m in net.modules() if isinstance(m, ConvTrunk)):
        layers = list(trunk.blocks)
        for i in range(len(layers) - 1):
            if isinstance(layers[i], nn.Conv2d) and isinstance(layers[i + 1], nn.BatchNorm2d):
                layers[i], layers[i + 1] = (
                    fuse_conv_bn_eval(layers[i], layers[i + 1]),
                    nn.Identity(),
                )
        trunk.blocks = nn.Sequential(*layers).to(memory_format=torch.channels_last)
    return net


class PhaseHeads(nn.Module):
    """Per-phase heads over trunk features ``(B, L, C)``, all phases in a few batched matmuls.

    Phase ``t`` pools the features with ``n_queries`` attention distributions over the L positions
    (query · features + a learned positional prior: each phase learns where its reflections are),
    adds the global max over positions, and applies its own two-layer MLP to get 2 logits.
    """

    def __init__(
        self, n_tasks: int, channels: int, length: int, n_queries: int, hidden: int, dropout: float
    ) -> None:
        super().__init__()
        self.n_tasks, self.hidden = n_tasks, hidden
        tq, d_in = n_tasks * n_queries, channels * (n_queries + 1)
        self.query = nn.Parameter(torch.randn(channels, tq) * channels**-0.5)
        self.prior = nn.Parameter(torch.zeros(length, tq))
        self.w_att = nn.Parameter(
            torch.randn(n_tasks, n_queries * channels, hidden) * (2 / d_in) ** 0.5
        )
        self.w_max = nn.Parameter(torch.randn(channels, n_tasks * hidden) * (2 / d_in) ** 0.5)
        self.b1 = nn.Parameter(torch.zeros(n_tasks, hidden))
        self.w2 = nn.Parameter(torch.randn(n_tasks, hidden, 2) * hidden**-0.5 * 0.1)
        self.b2 = nn.Parameter(torch.zeros(n_tasks, 2))
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, t = h.shape[0], self.n_tasks
        att = torch.softmax(h @ self.query + self.prior, dim=1)  # (B, L, T·Q)
        pooled = (att.transpose(1, 2) @ h).reshape(b, t, -1).transpose(0, 1)  # (T, B, Q·C)
        z = torch.bmm(pooled, self.w_att).transpose(0, 1)  # (B, T, H)
        z = z + (h.amax(dim=1) @ self.w_max).view(b, t, self.hidden) + self.b1
        z = self.dropout(torch.relu(z))
        return torch.bmm(z.transpose(0, 1), self.w2).transpose(0, 1) + self.b2


class MultiTaskCNN(_Arch):
    """Shared conv trunk + one attention/dense head per phase; logits ``(B, T, 2)``."""

    arch_name = "mtl"

    def __init__(
        self,
        phases: Sequence[str],
        grid: QGrid = DEFAULT_GRID,
        channels: Sequence[int] = (24, 48, 64, 96),
        kernels: Sequence[int] = (3, 5, 3, 3),
        fold: int = 8,
        n_queries: int = 2,
        hidden: int = 64,
        dropout: float = 0.1,
        input_channels: Sequence[int] = (0, 1, 2, 3),
    ) -> None:
        config = {
            "channels": [int(c) for c in channels],
            "kernels": [int(k) for k in kernels],
            "fold": int(fold),
            "n_queries": int(n_queries),
            "hidden": int(hidden),
            "dropout": float(dropout),
        }
        super().__init__(phases, grid, input_channels, config)
        self.trunk = ConvTrunk(len(self.config["input_channels"]), channels, kernels, fold)
        with torch.no_grad():
            length = self.trunk(torch.zeros(1, len(self.config["input_channels"]), grid.n)).shape[1]
        if length < 1:
            raise ValueError(
                f"grid of {grid.n} points is too short for {len(channels)} pooling blocks"
            )
        self.heads = PhaseHeads(len(self.phases), channels[-1], length, n_queries, hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads(self.trunk(self.select(x)))


class BinaryCNNs(_Arch):
    """One single-phase :class:`MultiTaskCNN` per phase, channels scaled by ``width``.

    ``width=None`` picks the width at which the total parameter count is closest to that of the
    multi-task network with the same arguments (the comparison's parameter budget).
    """

    arch_name = "binary"

    def __init__(
        self,
        phases: Sequence[str],
        grid: QGrid = DEFAULT_GRID,
        width: float | None = None,
        **mtl_kwargs: Any,
    ) -> None:
        base = MultiTaskCNN(phases, grid, **mtl_kwargs)
        if width is None:
            width = _matched_width(base, len(base.phases))
        base_kwargs = {k: v for k, v in base.config.items() if k != "input_channels"}
        channels = [max(2, round(c * width)) for c in base_kwargs["channels"]]
        inputs = base.config["input_channels"]
        super().__init__(base.phases, grid, inputs, {"width": float(width), **base_kwargs})
        kwargs = {**base_kwargs, "channels": channels, "input_channels": inputs}
        self.nets = nn.ModuleList(MultiTaskCNN([p], grid, **kwargs) for p in self.phases)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([net(x) for net in self.nets], dim=1)


def _matched_width(base: MultiTaskCNN, n_tasks: int) -> float:
    """Channel multiplier making ``n_tasks`` single-phase nets about as large as ``base``."""
    target = n_parameters(base)
    kwargs = {k: v for k, v in base.config.items() if k not in ("channels",)}
    best, best_gap = 1.0, float("inf")
    for width in np.linspace(0.2, 1.0, 33):
        channels = [max(2, round(c * width)) for c in base.config["channels"]]
        size = n_tasks * n_parameters(
            MultiTaskCNN([base.phases[0]], base.grid, channels=channels, **kwargs)
        )
        if abs(size - target) < best_gap:
            best, best_gap = float(width), abs(size - target)
    return round(best, 4)


class PaperCNN(_Arch):
    """Li et al. (arXiv 2403.10042) on our grid: shared 2-layer conv trunk, dense heads."""

    arch_name = "paper"

    def __init__(
        self,
        phases: Sequence[str],
        grid: QGrid = DEFAULT_GRID,
        hidden: Sequence[int] = (1024, 256, 64),
        dropout: float = 0.5,
        input_channels: Sequence[int] = (0,),
    ) -> None:
        config = {"hidden": [int(h) for h in hidden], "dropout": float(dropout)}
        super().__init__(phases, grid, input_channels, config)
        n_in = len(self.config["input_channels"])
        self.trunk = nn.Sequential(
            nn.Conv1d(n_in, 8, 11, stride=2),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(8, 32, 11, stride=2),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_feat = self.trunk(torch.zeros(1, n_in, grid.n)).shape[-1]
        self.heads = nn.ModuleList(
            self._head(n_feat, config["hidden"], dropout) for _ in self.phases
        )

    @staticmethod
    def _head(n_in: int, hidden: Sequence[int], dropout: float) -> nn.Sequential:
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(n_in, h), nn.ReLU(), nn.Dropout(dropout)]
            n_in = h
        return nn.Sequential(*layers, nn.Linear(n_in, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.trunk(self.select(x))
        return torch.stack([head(z) for head in self.heads], dim=1)


ARCHITECTURES: dict[str, type[_Arch]] = {
    c.arch_name: c for c in (MultiTaskCNN, BinaryCNNs, PaperCNN)
}


def build_model(
    arch: str, phases: Sequence[str], grid: QGrid = DEFAULT_GRID, **kwargs: Any
) -> _Arch:
    """Instantiate architecture ``arch`` (a key of :data:`ARCHITECTURES`)."""
    if arch not in ARCHITECTURES:
        raise ModelError(f"unknown architecture {arch!r} (known: {', '.join(ARCHITECTURES)})")
    return ARCHITECTURES[arch](phases, grid, **kwargs)


# --------------------------------------------------------------------------------------- files


def _versions() -> dict[str, str]:
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
    path: str | Path, net: _Arch, meta: dict | None = None, dtype: str = "float32"
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
        "versions": _versions(),
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
    save_tensors(folder / WEIGHTS_FILE, tensors, {"format": "pt"})
    write_bytes(folder / META_FILE, (json.dumps(doc, indent=1) + "\n").encode())
    return folder


@dataclass
class LoadedModel:
    """A model read from disk: the network in eval mode on ``device`` and its metadata."""

    net: _Arch
    meta: dict
    path: Path
    device: torch.device

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
        """Calibrated probability ``(B, T)`` that each phase is present."""
        z = self.logits(x, batch_size)
        return probabilities(z, self.temperature)


def probabilities(logits: np.ndarray, temperature: np.ndarray | float = 1.0) -> np.ndarray:
    """P(present) from logits ``(..., T, 2)`` with per-phase ``temperature``: σ((z₁ − z₀) / T)."""
    d = (logits[..., 1] - logits[..., 0]) / np.asarray(temperature, dtype=np.float32)
    return (1.0 / (1.0 + np.exp(-np.clip(d, -60, 60)))).astype(np.float32)


def model_files(path: str | Path) -> tuple[Path, Path]:
    """(weights, metadata) paths of a model folder or of its ``.safetensors`` file."""
    p = Path(path)
    if p.suffix == ".safetensors":
        return p, p.with_suffix(".json")
    return p / WEIGHTS_FILE, p / META_FILE


def read_meta(path: str | Path) -> dict:
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
    phases = meta["phases"]
    if not isinstance(phases, list) or not phases or not all(isinstance(p, str) for p in phases):
        raise ModelError(
            f"metadata {meta_path.name}: 'phases' must be a non-empty list of names", path
        )
    n = len(phases)
    meta.setdefault("calibration", {}).setdefault("temperature", [1.0] * n)
    meta.setdefault("thresholds", [0.5] * n)
    for name, values in (
        ("calibration temperature", meta["calibration"]["temperature"]),
        ("thresholds", meta["thresholds"]),
    ):
        if not isinstance(values, list) or len(values) != n:
            raise ModelError(
                f"metadata {meta_path.name}: {name} must list one value per phase ({n})", path
            )
    if meta.get("preprocessing", PREPROCESSING)["version"] > PREPROCESSING["version"]:
        raise ModelError(
            f"model uses preprocessing version {meta['preprocessing']['version']}, "
            f"this xrdmtl has {PREPROCESSING['version']}",
            path,
        )
    return meta


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
    return LoadedModel(net=net, meta=meta, path=Path(path), device=dev)
