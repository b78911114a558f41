"""The one optimiser loop that training and fine-tuning share.

:func:`fit` runs SGD steps on batches from an iterator: per step it sets the learning rate, takes one
AdamW step with clipped gradients, records the loss and times the data wait and the compute in a
:class:`FitState`, and asks a ``after_step`` hook (validation, checkpoints, progress text) whether to
stop. The state is what a checkpoint stores and a resumed run starts from.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from ..progress import ProgressBar

CLIP_NORM = 5.0  # gradients are clipped to this total norm

Batch = tuple[torch.Tensor, torch.Tensor]  # (model input, labels)


def _timing() -> dict[str, float]:
    return {"data_wait_s": 0.0, "compute_s": 0.0, "eval_s": 0.0}


@dataclass
class FitState:
    """Where a run stands: steps done, the loss per step (``[step, loss]``), the validation rows,
    the best validation loss so far and its step, evaluations since it, early stopping, timing."""

    step: int = 0
    history: list[list[float]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    best_loss: float = math.inf
    best_step: int = 0
    bad_evals: int = 0
    stopped_early: bool = False
    timing: dict[str, float] = field(default_factory=_timing)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (what a checkpoint stores)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> FitState:
        """The state stored in a checkpoint (other keys of ``doc`` are ignored)."""
        return cls(**{f.name: doc[f.name] for f in fields(cls) if f.name in doc})


def fit(
    net: torch.nn.Module,
    loss_fn: torch.nn.Module,
    opt: torch.optim.Optimizer,
    batches: Iterator[Batch],
    steps: int,
    *,
    lr_at: Callable[[int], float],
    clipped: Sequence[torch.nn.Parameter],
    device: torch.device,
    state: FitState,
    bar: ProgressBar,
    after_step: Callable[[FitState], bool] | None = None,
) -> FitState:
    """Run up to ``steps`` optimiser steps from ``state`` (updated in place, and returned).

    ``lr_at(step)``: the learning rate of the step (0-based, counted over the whole run);
    ``clipped``: the parameters whose gradient norm is clipped to :data:`CLIP_NORM`;
    ``after_step(state)``: called after each step, returns True to stop.
    """
    for _ in range(steps):
        t0 = time.perf_counter()
        xb, yb = next(batches)
        t1 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = lr_at(state.step)
        loss = loss_fn(net(xb.to(device, non_blocking=True)), yb.to(device, non_blocking=True))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(clipped, CLIP_NORM)
        opt.step()
        state.step += 1
        state.history.append([state.step, round(float(loss.detach()), 6)])
        state.timing["data_wait_s"] += t1 - t0
        state.timing["compute_s"] += time.perf_counter() - t1
        bar.update(1)
        if after_step is not None and after_step(state):
            break
    return state
