"""Helpers shared by several test modules (``tests`` is on ``sys.path``, see pyproject)."""

from __future__ import annotations

import re

import numpy as np

from xrdmtl.physics.pattern import Pattern
from xrdmtl.physics.phases import get_phase
from xrdmtl.physics.units import tth_to_q

WAVELENGTH = 0.561  # Å, of the synthetic patterns
TARGETS = ("bastnaesite", "calcite", "rhenium")  # the default model's phases


def synthetic(
    contents: dict[str, float], seed: int = 0, height: float = 40.0, drop: tuple[int, ...] = ()
) -> Pattern:
    """2θ 4.5–25° at 0.561 Å: Gaussian peaks of each phase at lattice scale ``contents[name]``
    (the ``drop`` strongest reflections left out), a smooth background and unit Gaussian noise."""
    rng = np.random.default_rng(seed)
    tth = np.arange(4.5, 25.0, 0.01)
    q = tth_to_q(tth, WAVELENGTH)
    y = 20.0 + 30.0 * np.exp(-(((q - 2.6) / 1.2) ** 2)) + rng.normal(0.0, 1.0, q.size)
    for name, scale in contents.items():
        refl = get_phase(name).reflections(WAVELENGTH)
        order = np.argsort(-refl.intensity)
        keep = np.setdiff1d(order, order[list(drop)]) if drop else order
        for qr, inten in zip(refl.q[keep] / scale, refl.intensity[keep], strict=True):
            y += height * inten / 100.0 * np.exp(-0.5 * ((q - qr) / 0.008) ** 2)
    return Pattern(tth, y, "2th_deg", WAVELENGTH, source=f"synthetic {contents}")


PLACEHOLDERS = re.compile(r"\b(TBD|TODO|nan|NaN|None|null|inf|XX+)\b|\?\?|^\s*$|^—$")


NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


def table_cells(md: str) -> list[str]:
    """Every body cell of every Markdown table in ``md``."""
    cells = []
    for block in re.split(r"\n\s*\n", md):
        lines = [ln for ln in block.splitlines() if ln.startswith("|")]
        if len(lines) >= 2 and set(lines[1]) <= set("|-: "):
            for ln in lines[2:]:
                cells += [c.strip() for c in ln.strip().strip("|").split("|")]
    return cells


def _leaves(obj: object) -> list[object]:
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _leaves(v)]
    if isinstance(obj, list | tuple):
        return [x for v in obj for x in _leaves(v)]
    return [obj]


def allowed(results: dict) -> tuple[set[str], list[str]]:
    """Formatted forms of every number in the results, and every string in it (longest first)."""
    nums, strs = set(), set()
    for v in _leaves(results):
        if isinstance(v, bool):
            continue
        if isinstance(v, int):
            nums |= {str(v), f"{v:,}"}
        elif isinstance(v, float):
            nums |= {f"{100 * v:.1f}", f"{v:.1f}", f"{v:.2f}"}
        elif isinstance(v, str):
            strs.add(v)
    return nums, sorted(strs, key=len, reverse=True)


def check_tables(md: str, results: dict) -> int:
    """Assert every table cell is filled and each of its numbers is in ``results``; the cell count."""
    nums, strs = allowed(results)
    cells = table_cells(md)
    assert cells, "the report has no tables"
    for cell in cells:
        assert not PLACEHOLDERS.search(cell), f"placeholder in table cell {cell!r}"
        rest = cell
        for s in strs:
            if len(s) > 2 and s in rest:
                rest = rest.replace(s, " ")
        for tok in NUMBER.findall(rest):
            assert tok in nums, f"number {tok} in cell {cell!r} is not in results.json"
    return len(cells)


def grain_frame(poni: str, phase: str = "calcite", seed: int = 0) -> tuple[np.ndarray, ...]:
    """A tiny frame for the detector of ``poni`` (written here, 360² Pilatus pixels at 70 mm,
    0.561 Å): a flat background with a few-crystal ``phase`` (three bright compact spots on each
    of its eight strongest lines) and one bright anvil spot off every line of ``targets``. Returns
    the frame (int32), the grain spots' pixels and the anvil spot's pixels (bool)."""
    import pyFAI.detectors
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    from xrdmtl.physics.units import q_to_tth

    shape = (360, 360)
    ai = AzimuthalIntegrator(
        0.07,
        180 * 172e-6,
        180 * 172e-6,
        detector=pyFAI.detectors.Detector(172e-6, 172e-6, max_shape=shape),
        wavelength=WAVELENGTH * 1e-10,
    )
    ai.write(poni)
    tth = ai.array_from_unit(shape, "center", "2th_deg")
    chi = ai.center_array(shape, unit="chi_rad", scale=False)
    rows, cols = np.indices(shape)
    rng = np.random.default_rng(seed)

    def spot(two_theta: float, azimuth: float, counts: float) -> np.ndarray:
        near = np.abs(tth - two_theta) + 0.05 * np.abs(np.angle(np.exp(1j * (chi - azimuth))))
        r, c = np.unravel_index(np.argmin(near), shape)
        return counts * np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * 1.3**2))

    refl = get_phase(phase).reflections(WAVELENGTH)
    lines = q_to_tth(refl.q, WAVELENGTH)
    grains = sum(
        spot(float(lines[k]), float(azimuth), 3e3 * (0.5 + refl.intensity[k] / 100))
        for k in np.argsort(-refl.intensity)[:8]
        for azimuth in rng.uniform(-np.pi, np.pi, 3)
    )
    every = np.concatenate(
        [q_to_tth(get_phase(n).reflections(WAVELENGTH).q, WAVELENGTH) for n in TARGETS]
    )
    free = np.arange(8.0, 20.0, 0.01)
    off = float(free[np.argmax(np.abs(free[:, None] - every[None, :]).min(axis=1))])
    anvil = spot(off, 1.0, 6e3)
    frame = rng.poisson(20.0 + grains + anvil)
    return frame.astype(np.int32), np.asarray(grains > 50), np.asarray(anvil > 50)
