"""What a prediction returns: :class:`Prediction`, one per pattern, with typed :class:`Flag` notes.

A prediction's ``warning`` is the human text of its notes, each a :class:`Note` (a :class:`Flag`,
the phases it concerns, and its one-line text): code asks ``Flag.WITHHELD in pred.flags`` or
``pred.flagged(Flag.UNCERTAIN)`` rather than parsing the text. :meth:`Prediction.to_dict` is the
one plain form that the predictions CSV, the JSON output and the reports share.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..io.writers import cell_columns
from .explain import Explanation
from .verify import Verification


class Flag(str, enum.Enum):
    """What a note on a prediction says (its value is the name used in JSON)."""

    NO_DATA = "no_data"  # no data where a phase's strongest reflections lie
    WITHHELD = "withheld"  # a call the peaks do not support, withdrawn (the probability stays)
    NO_EVIDENCE = "no_evidence"  # a phase called without a peak at any of its reflections
    UNCERTAIN = "uncertain"  # a probability near its threshold
    UNEXPLAINED_PEAKS = "unexplained_peaks"  # strong peaks no called phase explains
    WAVELENGTH = "wavelength"  # the reader's note on the wavelength (e.g. file and option differ)
    X_UNIT = "x_unit"  # the x unit read may be wrong (a better-fitting unit, or an assumed 2θ)
    Q_SCALE = "q_scale"  # the peaks fit the phases only with Q scaled: check λ or the distance
    DATA = "data"  # the data itself looks wrong (gaps, sign-flipped, saturated, too coarse a step)
    PHYSICS = "physics"  # the physics check, which only reports, reads a phase otherwise


@dataclass(frozen=True)
class Note:
    """One note on a prediction: its flag, the phases it concerns (if any), and its text."""

    flag: Flag
    text: str
    phases: tuple[str, ...] = ()


@dataclass
class Prediction:
    """The result for one pattern (a file, or one frame ``stack.h5::17``).

    ``probabilities`` and ``calls`` (0/1) are keyed by phase in the model's order; both are empty when
    ``error`` is set. ``notes`` are the warnings, typed; ``warning`` renders them as one line and
    ``error`` is one line ("" when none).
    """

    file: str
    probabilities: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)
    error: str = ""
    explanation: Explanation | None = None
    wavelength: float | None = None  # Å, the one the pattern was read with (None: not known)
    wavelength_source: str = ""  # file, option, default or poni
    x_unit: str = ""  # the x unit read, "2th_deg (assumed)" where the file names none
    verification: Verification | None = None  # the physics check (None: not verified)

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def found(self) -> list[str]:
        """Names of the phases called present."""
        return [name for name, c in self.calls.items() if c]

    @property
    def warning(self) -> str:
        """The notes as one line ("" when none)."""
        return "; ".join(n.text for n in self.notes)

    @property
    def flags(self) -> frozenset[Flag]:
        """The flags of the notes."""
        return frozenset(n.flag for n in self.notes)

    def flagged(self, flag: Flag) -> list[str]:
        """The phases that notes with ``flag`` concern, in note order."""
        return [p for n in self.notes if n.flag is flag for p in n.phases]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (probabilities to 4 decimals): file, probabilities, calls, found,
        warning, flags, error, what the pattern was read with, the peaks behind the calls, and the
        physics check (None where not verified)."""
        e = self.explanation
        return {
            "file": self.file,
            "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
            "calls": dict(self.calls),
            "found": self.found,
            "warning": self.warning,
            "flags": list(dict.fromkeys(n.flag.value for n in self.notes)),
            "error": self.error,
            "wavelength": self.wavelength,
            "wavelength_source": self.wavelength_source,
            "x_unit": self.x_unit,
            "matched_q": {k: [round(q, 4) for q in v] for k, v in e.matched.items()} if e else {},
            "unexplained_q": [round(q, 4) for q in e.unexplained] if e else [],
            "verification": self.verification.to_json(self.calls) if self.verification else None,
        }

    def row(self, phases: Sequence[str], cells: bool = False) -> list[str]:
        """The CSV row (:func:`~xrdmtl.io.writers.csv_header`): file, p_<phase>…, <phase>…, warning,
        error, wavelength, wavelength_source, x_unit, then with ``cells`` each phase's refined cell
        (``<phase>_a``, ``_a_err``, ``_c``, ``_c_err``; empty unless verified and called)."""
        d = self.to_dict()
        provenance = [
            "" if d["wavelength"] is None else f"{d['wavelength']:g}",
            d["wavelength_source"],
            d["x_unit"],
        ]
        if self.error:
            probs = calls = [""] * len(phases)
        else:
            probs = [f"{d['probabilities'][p]:.4f}" for p in phases]
            calls = [str(int(d["calls"][p])) for p in phases]
        v = self.verification
        values = v.cell_values(phases, self.calls) if v else [""] * len(cell_columns(phases))
        return [
            d["file"], *probs, *calls, d["warning"], d["error"], *provenance, *(values if cells else []),
        ]  # fmt: skip
