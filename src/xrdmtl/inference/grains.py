"""Grain spots kept by ``--mask auto``: a bright compact spot on a line of an evident phase is sample.

The auto mask (:func:`xrdmtl.io.masking.find_spots`) takes every bright compact spot that stands
nearly alone on its ring for a diamond-anvil spot, and so also the crystallite spots of a phase with
a few crystals. With a model at hand the frame is read in two passes
(:meth:`xrdmtl.io.frames.Integrator.grain_mask`): the frame integrated unmasked is checked against
the model's phases (:class:`~xrdmtl.inference.verify.Verifier`, each phase at its refined cell), and
the spots whose 2θ lies within half a line width (at least one pixel) of a line of a phase with
:data:`EVIDENT_LINES` lines beyond chance are spared; the rest are masked as before and the frame is
integrated again. :class:`GrainLines` is the check the reader calls; :func:`evident_lines` the pure
step from the check's results to the lines.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import XrdmtlError
from ..physics.pattern import Pattern
from ..physics.units import q_to_tth
from .verify import PhaseCheck, Verifier

# a phase whose check finds this many lines beyond chance (PhaseCheck.lines) owns the spots on its
# lines; chosen loosely on the development family (docs/verify.md), to retune with the check
EVIDENT_LINES = 1.0


def evident_lines(
    checks: Mapping[str, PhaseCheck], wavelength: float, min_lines: float = EVIDENT_LINES
) -> tuple[np.ndarray, np.ndarray]:
    """2θ (degrees) of every line, at its refined cell, of the phases with ``min_lines`` lines beyond
    chance, and each line's half width (half the fitted FWHM, in degrees 2θ)."""
    centres: list[np.ndarray] = []
    halves: list[np.ndarray] = []
    for check in checks.values():
        if not (np.isfinite(check.lines) and check.lines >= min_lines) or not check.ticks:
            continue
        q = np.array([v for _, v in check.ticks], dtype=float)
        half = 0.5 * (check.fwhm if np.isfinite(check.fwhm) else 0.0)
        lo, mid, hi = (q_to_tth(q + d, wavelength) for d in (-half, 0.0, half))
        ok = np.isfinite(mid)
        centres.append(mid[ok])
        halves.append(np.nan_to_num(0.5 * (hi - lo), nan=0.0)[ok])
    if not centres:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(centres), np.concatenate(halves)


class GrainLines:
    """The sample's lines in a frame's pattern (what :meth:`~xrdmtl.io.frames.Integrator.grain_mask`
    asks): every line of the phases the ``verifier`` finds evident, at their refined cells."""

    def __init__(self, verifier: Verifier, min_lines: float = EVIDENT_LINES) -> None:
        self.verifier = verifier
        self.min_lines = min_lines

    def __call__(self, pattern: Pattern) -> tuple[np.ndarray, np.ndarray]:
        if pattern.wavelength is None:
            return np.zeros(0), np.zeros(0)
        try:
            x, known = self.verifier.inputs([pattern])
        except XrdmtlError:  # the prediction will say why
            return np.zeros(0), np.zeros(0)
        _, (verification,) = self.verifier.check(x, np.zeros((1, len(self.verifier.phases))), known)
        return evident_lines(verification.phases, pattern.wavelength, self.min_lines)
