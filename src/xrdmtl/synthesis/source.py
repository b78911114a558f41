"""What training draws patterns from: the :class:`PatternSource` protocol.

:class:`~xrdmtl.synthesis.patterns.Synthesizer` is one; a test's toy generator, or a user's own
simulator, is another: anything with a grid, named target phases and a ``sample`` method.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ..physics.grid import QGrid


class Named(Protocol):
    """A target phase, as far as training needs it: its name."""

    @property
    def name(self) -> str: ...


class PatternBatch(Protocol):
    """Patterns on a grid: intensity and coverage ``(n, G)``, labels ``(n, T)`` in target order."""

    @property
    def intensity(self) -> np.ndarray: ...

    @property
    def coverage(self) -> np.ndarray: ...

    @property
    def labels(self) -> np.ndarray: ...


class PatternSource(Protocol):
    """A generator of labeled patterns of ``targets`` on ``grid``; ``sample(n, rng)`` draws ``n``
    of them, the same ones for the same ``rng`` state."""

    @property
    def grid(self) -> QGrid: ...

    @property
    def targets(self) -> Sequence[Named]: ...

    def sample(self, n: int, rng: np.random.Generator) -> PatternBatch: ...
