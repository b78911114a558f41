"""Crystalline phases and their reflections at any wavelength (pymatgen does the crystallography).

A :class:`Phase` wraps a pymatgen ``Structure``. :meth:`Phase.reflections` gives, for a wavelength,
each reflection's hkl, d, Q, 2θ, multiplicity and relative intensity. Intensities are computed once
without the Lorentz–polarisation factor (a property of the structure alone) and the factor for the
requested wavelength is applied on top, so any wavelength costs nothing after the first call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import PhaseError
from .units import q_to_tth

Q_MAX = 8.0  # Å⁻¹: reflections are tabulated up to here (covers 2θ ≤ 40° at 22 keV, 2θ ≤ 150° at Cu Kα)


@dataclass(frozen=True)
class Reflections:
    """Reflection table of one phase at one wavelength, sorted by Q; ``intensity`` peaks at 100."""

    hkl: tuple[tuple[int, ...], ...]
    d: np.ndarray
    q: np.ndarray
    two_theta: np.ndarray | None
    intensity: np.ndarray
    multiplicity: np.ndarray
    wavelength: float | None

    def strongest(self, k: int) -> Reflections:
        """The ``k`` most intense reflections, still sorted by Q."""
        idx = np.sort(np.argsort(self.intensity)[::-1][:k])
        return self.take(idx)

    def take(self, idx: np.ndarray) -> Reflections:
        return Reflections(
            tuple(self.hkl[i] for i in idx), self.d[idx], self.q[idx],
            None if self.two_theta is None else self.two_theta[idx],
            self.intensity[idx], self.multiplicity[idx], self.wavelength,
        )


def lorentz_polarization(two_theta_deg: np.ndarray) -> np.ndarray:
    """Unpolarised-beam Lorentz–polarisation factor (1 + cos²2θ) / (sin²θ cos θ)."""
    tth = np.deg2rad(two_theta_deg)
    th = tth / 2
    return (1 + np.cos(tth) ** 2) / (np.sin(th) ** 2 * np.cos(th))


@dataclass
class Phase:
    """A named crystal structure. ``source`` says where it came from (file and citation)."""

    name: str
    structure: object  # pymatgen.core.Structure
    source: str = ""
    formula: str = ""
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_cif(cls, path: str | Path, name: str | None = None, source: str | None = None) -> Phase:
        """Read a CIF file (first structure) with pymatgen."""
        import warnings

        from pymatgen.core import Structure

        path = Path(path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                structure = Structure.from_file(str(path))
        except Exception as exc:  # pymatgen raises many types on bad CIFs
            raise PhaseError(f"cannot read structure: {type(exc).__name__}: {exc}", path) from exc
        return cls(
            name=name or path.stem,
            structure=structure,
            source=source or str(path),
            formula=structure.composition.reduced_formula,
        )

    @cached_property
    def _structure_factors(self) -> tuple[tuple, np.ndarray, np.ndarray, np.ndarray]:
        """(hkl, d, |F|²·multiplicity without LP, multiplicity) for every reflection with Q ≤ Q_MAX."""
        from pymatgen.analysis.diffraction.xrd import XRDCalculator

        wavelength = 4 * np.pi / Q_MAX * 0.999  # 2θ = 180° reaches Q_MAX
        calc = XRDCalculator(wavelength=wavelength)
        pat = calc.get_pattern(self.structure, scaled=False, two_theta_range=(0.5, 179.5))
        tth = np.asarray(pat.x)
        f2m = np.asarray(pat.y) / lorentz_polarization(tth)
        hkl = tuple(tuple(int(v) for v in fam[0]["hkl"]) for fam in pat.hkls)
        mult = np.array([sum(f["multiplicity"] for f in fam) for fam in pat.hkls], dtype=int)
        return hkl, np.asarray(pat.d_hkls, dtype=float), f2m, mult

    def reflections(self, wavelength: float | None = None, q_max: float = Q_MAX, min_intensity: float = 0.0) -> Reflections:
        """Reflections up to ``q_max`` (and within reach of ``wavelength``, Å, if given).

        Without a wavelength the intensities carry no Lorentz–polarisation factor (structure only).
        """
        return _reflections(self, wavelength, float(q_max), float(min_intensity))

    def lattice_scaled(self, scale: float | tuple[float, float, float], name: str | None = None) -> Phase:
        """A copy with lattice lengths multiplied by ``scale`` (one factor, or one per a, b, c)."""
        s = np.broadcast_to(np.asarray(scale, dtype=float), (3,))
        lat = self.structure.lattice
        from pymatgen.core import Lattice, Structure

        new_lat = Lattice.from_parameters(*(np.array(lat.abc) * s), *lat.angles)
        st = Structure(new_lat, self.structure.species, self.structure.frac_coords)
        return Phase(name or self.name, st, self.source, self.formula, dict(self.meta, lattice_scale=s.tolist()))

    def __hash__(self) -> int:
        return id(self)


@lru_cache(maxsize=512)
def _reflections(phase: Phase, wavelength: float | None, q_max: float, min_intensity: float) -> Reflections:
    hkl, d, f2m, mult = phase._structure_factors
    q = 2 * np.pi / d
    keep = q <= q_max
    if wavelength is not None:
        keep &= q < 4 * np.pi / wavelength
    tth = q_to_tth(q, wavelength) if wavelength is not None else None
    inten = f2m * (lorentz_polarization(tth) if tth is not None else 1.0)
    inten = np.where(keep, inten, 0.0)
    inten = 100 * inten / inten.max() if inten.max() > 0 else inten
    keep &= inten >= min_intensity
    order = np.argsort(q[keep])
    idx = np.flatnonzero(keep)[order]
    return Reflections(
        tuple(hkl[i] for i in idx), d[idx], q[idx], None if tth is None else tth[idx],
        inten[idx], mult[idx], wavelength,
    )


def builtin_cif_dir() -> Path:
    """Folder of the CIF files shipped with the package."""
    return Path(str(resources.files("xrdmtl") / "data" / "cif"))
