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

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from ..physics.grid import DEFAULT_GRID, QGrid
from .preprocess import N_CHANNELS


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def n_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


class Network(nn.Module):
    """Common part of the architectures: phases, grid, input channels, JSON-able arguments."""

    arch_name = ""
    _channels: torch.Tensor  # a buffer: the input channels this network reads

    def __init__(
        self,
        phases: Sequence[str],
        grid: QGrid,
        input_channels: Sequence[int],
        config: dict[str, Any],
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


class PairMax(nn.Module):
    """Max over neighbouring pairs along the last axis of a channels-last ``(B, C, 1, W)`` tensor.

    The same values as ``nn.MaxPool2d((1, 2))`` (an odd last point is dropped) and the same gradients
    (but for exact ties, which split theirs), as one elementwise maximum of two strided views: on
    CPU about ten times faster than the pooling kernel on channels-last tensors, where pooling took
    as long as the convolutions.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.permute(0, 2, 3, 1)  # (B, 1, W, C): the memory order of channels-last
        w = y.shape[2] // 2 * 2
        return torch.maximum(y[:, :, 0:w:2], y[:, :, 1:w:2]).permute(0, 3, 1, 2)


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
                PairMax(),
                nn.ReLU(inplace=True),
            ]
            c_in = c
        self.blocks = nn.Sequential(*layers).to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs lack memory_format

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, n = x.shape
        if n % self.fold:
            x = nn.functional.pad(x, (0, self.fold - n % self.fold))
        # one copy into channels-last order (B, 1, L, C·fold), seen as (B, C·fold, 1, L)
        x = x.reshape(b, c, -1, self.fold).permute(0, 2, 1, 3).reshape(b, 1, -1, c * self.fold)
        x = x.permute(0, 3, 1, 2)
        out: torch.Tensor = self.blocks(x)
        return out.permute(0, 2, 3, 1).flatten(1, 2)


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
        trunk.blocks = nn.Sequential(*layers).to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs lack memory_format
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


class MultiTaskCNN(Network):
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
        out: torch.Tensor = self.heads(self.trunk(self.select(x)))
        return out


class BinaryCNNs(Network):
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


class PaperCNN(Network):
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
        widths = [int(h) for h in hidden]
        super().__init__(
            phases, grid, input_channels, {"hidden": widths, "dropout": float(dropout)}
        )
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
        self.heads = nn.ModuleList(self._head(n_feat, widths, dropout) for _ in self.phases)

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


ARCHITECTURES: dict[str, type[Network]] = {
    c.arch_name: c for c in (MultiTaskCNN, BinaryCNNs, PaperCNN)
}

# six conv blocks (the network's defaults have four): on every simulated family the model was not
# tuned on the fifth block scored 0.4–2.7 points above four and the sixth 0.2–1.5 above five, at
# ~93 % of the five-block network's inference speed (docs/results.md)
SHIPPED_MTL_KWARGS: dict[str, Any] = {
    "channels": [24, 48, 64, 96, 128, 160],
    "kernels": [3, 5, 3, 3, 3, 3],
}
"""The shipped default model's multi-task network: what ``xrdmtl train --arch mtl`` builds."""


def build_model(
    arch: str, phases: Sequence[str], grid: QGrid = DEFAULT_GRID, **kwargs: Any
) -> Network:
    """Instantiate architecture ``arch`` (a key of :data:`ARCHITECTURES`)."""
    if arch not in ARCHITECTURES:
        raise ModelError(f"unknown architecture {arch!r} (known: {', '.join(ARCHITECTURES)})")
    return ARCHITECTURES[arch](phases, grid, **kwargs)


# --------------------------------------------------------------------------------------- files
