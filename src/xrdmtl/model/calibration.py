"""Probabilities that mean what they say: per-phase temperature scaling and calibration error.

Temperature scaling (Guo et al., ICML 2017) divides each phase's logit difference z₁ − z₀ by one
positive number fitted to minimise the negative log-likelihood on held-out data; it changes no call
at threshold 0.5, only how confident the probabilities are.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _margins(logits: np.ndarray) -> np.ndarray:
    """Logit differences ``(N, T)`` from logits ``(N, T, 2)`` (or margins given directly)."""
    z = np.asarray(logits, dtype=np.float64)
    return z[..., 1] - z[..., 0] if z.ndim == 3 else z


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)
) -> np.ndarray:
    """Per-phase temperatures ``(T,)`` minimising the NLL of σ((z₁ − z₀)/T) against ``labels (N, T)``.

    ``logits``: ``(N, T, 2)`` or margins ``(N, T)``. All phases are fitted at once (the objective is
    separable) with L-BFGS on log T, clipped to ``bounds``.
    """
    margin = torch.as_tensor(_margins(logits))
    y = torch.as_tensor(np.asarray(labels, dtype=np.float64))
    if margin.shape != y.shape or margin.ndim != 2:
        raise ValueError(f"logits {tuple(margin.shape)} and labels {tuple(y.shape)} do not match")
    log_t = torch.zeros(margin.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        nll = (
            F.binary_cross_entropy_with_logits(margin / log_t.exp(), y, reduction="none")
            .mean(0)
            .sum()
        )
        nll.backward()
        return nll

    opt.step(closure)
    return np.asarray(np.clip(log_t.detach().exp().numpy(), *bounds), dtype=np.float32)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> float:
    """ECE of presence probabilities: Σ_b (n_b / N) · |mean p_b − fraction present_b| over
    ``n_bins`` equal-width bins of p. 2-D inputs ``(N, T)`` pool all phases' calls."""
    p = np.asarray(probs, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    if p.shape != y.shape or p.size == 0:
        raise ValueError("probabilities and labels must be non-empty and of one shape")
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, p, n_bins) - np.bincount(bins, y, n_bins))
    return float(gap.sum() / count.sum())
