"""Loss candidates: finite, differentiable, equal to plain cross-entropy at their neutral settings."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xrdmtl.model.losses import LOSSES, make_loss


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(32, 3, 2, generator=g) * 3
    labels = (torch.rand(32, 3, generator=g) < 0.4).to(torch.uint8)
    return logits, labels


def _plain(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return sum(F.cross_entropy(logits[:, t], labels[:, t].long()) for t in range(logits.shape[1]))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_finite_and_gradient_flows(name: str, batch) -> None:
    logits, labels = batch
    logits = logits.clone().requires_grad_(True)
    loss_fn = make_loss(name, 3)
    loss = loss_fn(logits, labels)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    for p in loss_fn.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("ce", {}),
        ("weighted_ce", {"weights": (1.0, 1.0)}),
        ("focal", {"gamma": 0.0}),
        ("uncertainty", {}),
        ("smoothed", {"epsilon": 0.0}),
    ],
)
def test_neutral_setting_is_plain_cross_entropy(name: str, kwargs: dict, batch) -> None:
    logits, labels = batch
    torch.testing.assert_close(make_loss(name, 3, **kwargs)(logits, labels), _plain(logits, labels))


def test_weighted_and_focal_emphasis(batch) -> None:
    logits, labels = batch
    ce = _plain(logits, labels)
    assert make_loss("focal", 3)(logits, labels) < ce
    only_present = torch.ones_like(labels)
    torch.testing.assert_close(
        make_loss("weighted_ce", 3)(logits, only_present), _plain(logits, only_present)
    )


def test_shape_mismatch_and_unknown_name(batch) -> None:
    logits, labels = batch
    with pytest.raises(ValueError, match="expected logits"):
        make_loss("ce", 2)(logits, labels)
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("hinge", 3)
