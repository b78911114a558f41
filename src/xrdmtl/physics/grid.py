"""The model's fixed Q grid: every pattern is resampled onto it, whatever its wavelength."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import numpy as np


@dataclass(frozen=True)
class QGrid:
    """``n`` evenly spaced Q values (Å⁻¹) from ``q_min`` to ``q_max`` inclusive."""

    q_min: float = 0.8
    q_max: float = 5.0
    n: int = 2048

    @cached_property
    def values(self) -> np.ndarray:
        return np.linspace(self.q_min, self.q_max, self.n)

    @property
    def step(self) -> float:
        return (self.q_max - self.q_min) / (self.n - 1)

    def index(self, q: np.ndarray) -> np.ndarray:
        """Fractional grid index of each Q value."""
        return (np.asarray(q, dtype=float) - self.q_min) / self.step

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QGrid:
        return cls(float(d["q_min"]), float(d["q_max"]), int(d["n"]))


DEFAULT_GRID = QGrid()
