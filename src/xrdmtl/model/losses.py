"""Multi-task losses: logits ``(B, T, 2)`` and 0/1 labels ``(B, T)`` → a scalar, summed over tasks.

Li et al. (arXiv 2403.10042) train with a "tailored" cross-entropy whose exact form is not given in
the paper; their released code sums per-head cross-entropies with class weights [1.0, 1.6]. The
candidates here, each reducing to plain cross-entropy at its neutral setting:

- ``ce``: Σ_t CE_t, the baseline.
- ``weighted_ce``: Σ_t CE_t with class weights (absent, present) = (1.0, 1.6), the paper's code.
- ``focal``: Σ_t mean (1 − p_true)^γ · CE, γ = 2 (Lin et al., ICCV 2017): down-weights the many easy
  patterns, concentrating on weak peaks and confusers. γ = 0 is CE.
- ``uncertainty``: Σ_t exp(−s_t) · CE_t + s_t / 2 with learned log-variances s_t (Kendall, Gal &
  Cipolla, CVPR 2018): the tasks' weights are learned instead of hand-set. s = 0 is CE.
- ``smoothed``: Σ_t CE against labels smoothed by ε = 0.05 (Szegedy et al., CVPR 2016; Müller et al.,
  NeurIPS 2019): robust to the few wrong labels of stage-labeled experiments, and less over-confident.
  ε = 0 is CE.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class _TaskLoss(nn.Module):
    """Base: validates shapes and flattens tasks; subclasses give per-task mean losses ``(T,)``."""

    def __init__(self, n_tasks: int) -> None:
        super().__init__()
        self.n_tasks = int(n_tasks)

    def per_task(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if (
            logits.ndim != 3
            or logits.shape[1:] != (self.n_tasks, 2)
            or labels.shape != logits.shape[:2]
        ):
            raise ValueError(
                f"expected logits (B, {self.n_tasks}, 2) and labels (B, {self.n_tasks}), "
                f"got {tuple(logits.shape)} and {tuple(labels.shape)}"
            )
        return self.per_task(logits, labels.long()).sum()


def _ce(logits: torch.Tensor, labels: torch.Tensor, **kw: Any) -> torch.Tensor:
    """Unreduced cross-entropy ``(B, T)``."""
    return F.cross_entropy(logits.transpose(1, 2), labels, reduction="none", **kw)


class CrossEntropy(_TaskLoss):
    """Plain cross-entropy, mean over the batch, summed over tasks."""

    def per_task(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return _ce(logits, labels).mean(0)


class WeightedCrossEntropy(_TaskLoss):
    """Class-weighted cross-entropy (weighted mean over the batch, as ``nn.CrossEntropyLoss``)."""

    weights: torch.Tensor  # a buffer: (absent, present) class weights

    def __init__(self, n_tasks: int, weights: tuple[float, float] = (1.0, 1.6)) -> None:
        super().__init__(n_tasks)
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))

    def per_task(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        w = self.weights.to(logits.dtype)[labels]
        return (_ce(logits, labels) * w).sum(0) / w.sum(0)


class FocalLoss(_TaskLoss):
    """Focal loss (1 − p_true)^γ · CE, optionally with α-balancing of the present class."""

    def __init__(self, n_tasks: int, gamma: float = 2.0, alpha: float | None = None) -> None:
        super().__init__(n_tasks)
        self.gamma, self.alpha = float(gamma), alpha

    def per_task(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        ce = _ce(logits, labels)
        loss = (1 - torch.exp(-ce)).pow(self.gamma) * ce
        if self.alpha is not None:
            loss = loss * torch.where(labels == 1, self.alpha, 1 - self.alpha)
        return loss.mean(0)


class UncertaintyWeighting(_TaskLoss):
    """Learned homoscedastic task weighting: Σ exp(−s_t)·CE_t + s_t/2 (train ``s`` with the model)."""

    def __init__(self, n_tasks: int) -> None:
        super().__init__(n_tasks)
        self.log_var = nn.Parameter(torch.zeros(n_tasks))

    def per_task(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.log_var) * _ce(logits, labels).mean(0) + 0.5 * self.log_var


class SmoothedCrossEntropy(_TaskLoss):
    """Cross-entropy against labels smoothed by ``epsilon``."""

    def __init__(self, n_tasks: int, epsilon: float = 0.05) -> None:
        super().__init__(n_tasks)
        self.epsilon = float(epsilon)

    def per_task(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return _ce(logits, labels, label_smoothing=self.epsilon).mean(0)


LOSSES: dict[str, type[_TaskLoss]] = {
    "ce": CrossEntropy,
    "weighted_ce": WeightedCrossEntropy,
    "focal": FocalLoss,
    "uncertainty": UncertaintyWeighting,
    "smoothed": SmoothedCrossEntropy,
}


def make_loss(name: str, n_tasks: int, **kwargs: object) -> _TaskLoss:
    """The loss ``name`` (a key of :data:`LOSSES`) for ``n_tasks`` tasks; ``kwargs`` set its knobs."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r} (known: {', '.join(LOSSES)})")
    return LOSSES[name](n_tasks, **kwargs)
