"""Saliency maps: every intensity-derived channel is evidence, coverage is not."""

from __future__ import annotations

import numpy as np
import torch

from xrdmtl.inference.explain import saliency, top_regions
from xrdmtl.model.preprocess import COVERAGE_CHANNEL, EVIDENCE_CHANNELS, N_CHANNELS


class _OneChannel(torch.nn.Module):
    """Logit of one phase = weighted sum of one input channel over a window."""

    def __init__(self, channel: int, window: slice) -> None:
        super().__init__()
        self.channel, self.window = channel, window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.channel, self.window].sum(dim=1, keepdim=True)


def test_saliency_follows_each_evidence_channel_but_not_coverage() -> None:
    x = np.full((1, N_CHANNELS, 200), 0.5, np.float32)
    for channel in EVIDENCE_CHANNELS:
        sal = saliency(_OneChannel(channel, slice(80, 100)), x)
        assert sal.shape == (1, 1, 200)
        assert np.abs(sal[0, 0, 85:95]).min() > 0.5  # the window drives the call
        assert np.abs(sal[0, 0, :60]).max() == 0.0
    assert np.abs(saliency(_OneChannel(COVERAGE_CHANNEL, slice(80, 100)), x)).max() == 0.0


def test_top_regions_largest_first() -> None:
    q = np.linspace(1.0, 3.0, 201)
    sal = np.zeros(201)
    sal[20:25] = 0.5
    sal[100:130] = 1.0
    regions = top_regions(sal, q, k=2)
    assert regions[0] == (q[100], q[129]) and regions[1] == (q[20], q[24])
