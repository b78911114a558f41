"""Vectorised synthetic 1D diffraction patterns on the model's Q grid, with every distortion.

:class:`Synthesizer` draws labeled batches for any set of target phases. Every distortion is a pure,
parameterised function below; :class:`SynthConfig` holds the ranges they are drawn from and says
where each range comes from. "hdac" in a comment means our own measurement on the 29 hydrothermal
diamond-anvil-cell patterns of Li et al. (2024) at λ = 0.561 Å (``../shared/data/hdac``): peaks fitted
with pseudo-Voigts, noise and background levels read off the raw and masked integrations. The
generator never sees those patterns; they only set the ranges.

Speed: reflections are tabulated per phase once; per batch, parameters are drawn per pattern, phase
and reflection with numpy broadcasting; each peak is evaluated only in a window around it, at a
resolution matched to its width, and the resolution levels are summed coarse to fine by linear
interpolation (the smooth background joins at an eighth of the grid's resolution); noise is cut
from a few pre-smoothed random banks. Single-threaded numpy on cache-sized chunks.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path, write_text
from ..errors import ConfigError
from ..physics.grid import DEFAULT_GRID, QGrid
from ..physics.phases import Phase, lorentz_polarization
from ..physics.profiles import pseudo_voigt, pseudo_voigt_area
from ..physics.units import q_to_tth, q_to_tth_rad, tth_rad_to_q, tth_to_q

SCHERRER_K = 0.9
PEAK_WINDOW = 32  # points per peak window, at the peak's resolution level
N_LEVELS = 6  # resolution levels: FWHM up to 6·2^5 = 192 grid points
BG_LEVEL = 4  # backgrounds are evaluated on every 2^4-th grid point (0.033 Å⁻¹ on the default grid)
NOISE_BOXES = (
    1,
    3,
    5,
    9,
    15,
)  # noise banks smoothed twice by boxes this wide: σ = 0, 1.2, 2, 3.7, 6
NOISE_BOX_P = (
    0.1,
    0.2,
    0.25,
    0.25,
    0.2,
)  # hdac noise is correlated over 2–10 points (masked: wider)
SYNTH_VERSION = 4  # raised whenever the generator changes beyond its SynthConfig (cached experiment runs key on it)


@dataclass(frozen=True)
class SynthConfig:
    """Ranges the generator draws from (uniform unless called log-uniform). Sources in comments."""

    # --- labels and mode
    p_present: float = 0.45  # each target independently; P(none) ≈ 0.17, P(all three) ≈ 0.09
    p_unmasked: float = 0.5  # raw integration (background, anvil spots) vs expert-processed look
    # --- beam and coverage
    p_lab: float = 0.2  # lab Kα patterns (RRUFF-like); the rest synchrotron µ-XRD
    synchrotron_wavelength: tuple[float, float] = (
        0.3,
        0.8,
    )  # Å, 15–41 keV µ-XRD beamlines (hdac 0.561)
    lab_wavelengths: tuple[float, ...] = (1.5406, 1.7890, 0.7107)  # Cu, Co, Mo Kα1 (Å)
    synchrotron_tth: tuple[float, float, float, float] = (
        0.5,
        4.5,
        22.0,
        45.0,
    )  # 2θ min lo/hi, max lo/hi
    # (hdac: unmasked 0.01–38.7°, masked 4.5–24.9°; area detectors at 20–40 keV reach 25–45°)
    lab_tth: tuple[float, float, float, float] = (
        3.0,
        20.0,
        50.0,
        120.0,
    )  # Co Kα 3–50° covers Q ≲ 3.0
    p_gaps: float = 0.25  # detector module gaps (Pilatus/Eiger: 1–3 gaps crossing the rings)
    gap_width_q: tuple[float, float] = (0.005, 0.05)  # Å⁻¹ (0.03–0.3° 2θ at 0.561 Å)
    # --- peak shape (pseudo-Voigt; widths added in quadrature)
    instrument_fwhm_deg: tuple[float, float] = (0.02, 0.25)  # log-uniform 2θ FWHM; hdac carbonates
    # 0.09–0.12° at 0.561 Å; lab diffractometers 0.04–0.12°; other beamlines and detector distances
    # 0.02–0.25° (with size and strain broadening every phase spans 0.02–0.4° at 0.56 Å)
    crystallite_size: tuple[float, float] = (60.0, 5000.0)  # Å, log-uniform; Scherrer ΔQ = 2πK/L
    microstrain: tuple[float, float] = (0.0, 0.006)  # ΔQ = εQ; cold-worked metals reach 0.5%
    # (a phase's own ranges, e.g. the rhenium gasket's, are its PhasePriors in the phase library)
    eta: tuple[float, float] = (
        0.0,
        0.8,
    )  # Lorentzian fraction; hdac fits 0–0.35 carbonates, 0.4–0.8 Re
    # --- positions (each phase's lattice-scale range: PhasePriors.lattice_range, widened to cover
    # lattice_coverage; an explicit per-phase override in lattice_ranges is taken as is)
    lattice_coverage: tuple[float, float] | None = (
        0.978,
        1.022,
    )  # issue 17: a hydrothermal cell runs
    # from room temperature past 500 °C and to a few GPa (calcite's c axis alone grows ~2 % by 500 °C,
    # rhenium compresses under load): every phase's isotropic scale range covers at least this.
    # `xrdmtl train --lattice-range LO HI` sets it; None keeps each phase's own range
    lattice_ranges: dict[str, tuple[float, float]] = field(
        default_factory=dict
    )  # per-phase override
    # by exact phase name, e.g. {"calcite": (0.99, 1.01)}: neither the prior nor the coverage applies
    anisotropic_strain: float = (
        0.006  # sd of the c-axis vs a-axis strain difference (calcite: c grows
    )
    # ~2 % while a shrinks ~0.2 % by 500 °C)
    zero_offset_deg: float = (
        0.02  # sd of the 2θ zero error (calibration of sample-detector distance)
    )
    # --- intensities
    p_texture: float = 0.5  # March–Dollase preferred orientation along c*
    march_r: tuple[float, float] = (0.5, 2.0)  # log-uniform; r < 1 plates, r > 1 needles
    crystals: tuple[float, float] = (
        3.0,
        20000.0,
    )  # log-uniform effective crystals per phase in the
    # beam, a handful to fine powder, for every phase (issue 17). Fewer than 30 once made a lone stray
    # peak "evidence"; now a present target always shows its own reflections: its min_shown-th
    # strongest reflection is raised to shown_snr σ (the strongest by at most max_shown_boost), and
    # where that is not enough it is labeled absent (one reflection is no phase)
    # few grains: a reflection seen by fewer than ``spotty_grains`` grains integrates to a few narrow
    # grain peaks (``grain_width`` × its FWHM, at most ``max_grain_peaks``), scattered about the
    # ring position by ``grain_spread`` × its FWHM (sd), as a spotty ring does in a 1D integration
    spotty_grains: float = 40.0
    max_grain_peaks: int = 6
    grain_width: tuple[float, float] = (0.25, 0.7)
    grain_spread: tuple[float, float] = (0.2, 1.2)
    min_shown: int = (
        3  # (the independent beamline's labels: every present phase shows ≥ 5 reflections
    )
    shown_snr: float = 6.0  # at Poisson SNR ≥ 5)
    max_shown_boost: float = 10.0
    absorption_mu_t: tuple[float, float] = (
        0.0,
        1.5,
    )  # fluid + anvil μt at 2θ = 0 (22 keV, 2 mm water ≈ 0.3)
    snr: tuple[float, float] = (
        20.0,
        400.0,
    )  # log-uniform strongest-peak height / noise σ, per phase
    # (masked look; hdac masked: weak Re ~5× the correlated noise, carbonates up to ~1000×)
    peak_to_background: tuple[float, float] = (0.004, 10.0)  # log-uniform, unmasked look: hdac
    # carbonates 0.07–1.2 over the fluid, rhenium 0.02 (xy_r_102) to 12, spots 0.04; never below
    # min_snr. A floor of 0.05 missed every simulated frame ring under 5 % (frame sim: from 2–3 %)
    # an absent target may leave a trace under the detection limit (unmasked look), labeled absent, with
    # probability PhasePriors.p_trace. Since issue 17 no built-in phase does: the hdac gasket traces
    # (rhenium 002/101 at 0.5–1.7 % over the fluid, noise 0.03 %) stand far above the noise, so calling
    # them absent is a labeling convention for adaptation (fine-tuning on the user's labels), not
    # physics the default model should learn
    trace_pbr: tuple[float, float] = (0.001, 0.01)  # log-uniform strongest-peak / background
    min_snr: float = 20.0  # every present phase's strongest peak stands at least this many σ high
    # (correlated noise makes 4–8σ wiggles look like peaks: weaker phases are label noise that taught
    # the model to call phases on wiggles; 8 → 20 raised hdac unmasked exact match from 48% to 66%)
    # --- confusers
    p_distractor_phase: tuple[float, ...] = (0.45, 0.3, 0.17, 0.08)  # P(0, 1, 2, 3 library phases)
    random_phases: int = (
        160  # pool of random-cell phases (random lattice + random sticks), built once
    )
    p_random_phase: tuple[float, ...] = (
        0.65,
        0.27,
        0.08,
    )  # P(0, 1, 2 random-cell phases) per pattern
    p_random_decoy: float = (
        0.3  # share of the pool whose strongest line sits on a target's strong one
    )
    p_amorphous: float = 0.3  # amorphous humps (glass, gel, a second fluid) in either look
    amorphous_fwhm_q: tuple[float, float] = (0.15, 0.35)  # log-uniform Å⁻¹
    amorphous_pbr: tuple[float, float] = (0.02, 0.5)  # unmasked look, hump / background
    amorphous_snr: tuple[float, float] = (5.0, 100.0)  # masked look
    p_random_peaks: float = (
        0.5  # unindexed extra peaks (unknown phases); most hdac patterns have none
    )
    random_peaks: tuple[int, int] = (1, 10)  # their uniform count when there are some
    random_peak_fwhm_q: tuple[float, float] = (0.008, 0.12)  # log-uniform Å⁻¹ (hdac masked 'none':
    # a 0.09 Å⁻¹ bump at Q 4.33 and weaker ones)
    random_peak_snr: tuple[float, float] = (3.0, 100.0)  # masked look
    random_peak_pbr: tuple[float, float] = (0.002, 0.3)  # unmasked look, peak / background
    p_spots: float = 0.6  # anvil-spot leaks in an unmasked pattern (hdac: 3 of 11 'none' show one,
    # and leaks are what makes negatives hard)
    spots: tuple[int, int] = (1, 4)  # their uniform count when there are some
    p_spots_masked: float = 0.1  # a spot the expert's mask missed
    spot_snr: tuple[float, float] = (3.0, 30000.0)  # log-uniform (masked look)
    spot_pbr: tuple[float, float] = (0.003, 1.5)  # unmasked look; a spot can outshine every ring
    spot_fwhm_factor: tuple[float, float] = (0.4, 1.1)  # × instrument FWHM (hdac n_71: 0.088°)
    p_decoy: float = 0.35  # a spot that lands on a strong reflection of a target (present or not):
    # hdac n_71's spot sits on Re (103), n_46's on calcite (116); one peak is no phase
    # --- background and noise
    counts: tuple[float, float] = (30.0, 3e7)  # log-uniform background counts-equivalent per point
    counts_unmasked: tuple[float, float] = (
        1e4,
        1e8,
    )  # raw look: hdac unmasked noise 0.013–1.1% (10–90th
    # percentile, median 0.03%) of the background ↔ 1e4–1e7 counts
    noise_boost_unmasked: tuple[float, float] = (1.0, 1.5)  # noise above Poisson
    noise_boost_masked: tuple[float, float] = (
        1.0,
        10.0,
    )  # masking and subtraction add noise (hdac:
    # masked correlated wiggles ~5 where the raw integration had 0.7)
    residual_bumps: tuple[int, int] = (
        0,
        5,
    )  # broad leftovers of the expert's background subtraction
    residual_snr: tuple[float, float] = (1.0, 30.0)  # hdac masked 'none': a bump ≈ 20× the noise
    residual_fwhm_q: tuple[float, float] = (0.04, 0.4)  # log-uniform Å⁻¹
    p_residual_positive: float = 0.8  # a leftover bump (rather than a dip)
    subtraction_level_error: float = 0.002  # sd of the expert's background level, relative
    subtraction_undershoot: tuple[float, float] = (0.0, 4.0)  # baseline left this many σ above 0
    spot_eta: tuple[float, float] = (0.0, 0.3)  # Lorentzian fraction of anvil spots
    # --- the raw integration's smooth background (unmasked look): fluid humps, cell, aperture
    aperture_cutoff_deg: tuple[float, float] = (15.0, 60.0)  # 2θ where the cell's opening cuts off
    aperture_softness_deg: tuple[float, float] = (2.0, 10.0)
    fluid_q: tuple[float, float] = (1.7, 2.8)  # Å⁻¹, the first water hump
    fluid_separation_q: tuple[float, float] = (0.7, 1.4)  # Å⁻¹, from the first hump to the second
    fluid_width_q: tuple[tuple[float, float], tuple[float, float]] = (
        (0.2, 0.8),
        (0.3, 1.0),
    )  # each hump's σ
    fluid_second_amp: tuple[float, float] = (0.0, 0.8)  # the second hump, relative to the first
    fluid_amp: tuple[float, float] = (0.1, 1.0)  # the fluid, relative to the cell background
    cell_const: tuple[float, float] = (0.0, 3.0)  # flat part
    p_cell_const: float = 0.8
    cell_compton: tuple[float, float] = (0.0, 1.0)  # Compton-like rise ...
    cell_compton_q: tuple[float, float] = (1.0, 5.0)  # ... over this Q (Å⁻¹)
    cell_lowq: tuple[float, float] = (1e-3, 2.0)  # log-uniform low-Q scatter ...
    cell_lowq_tau: tuple[float, float] = (0.05, 0.6)  # ... decaying over this Q (log-uniform, Å⁻¹)
    cell_poly_sd: float = 0.08  # sd of the Chebyshev terms (degree ≤ 3) across the range
    background_floor: float = 0.02  # of the background's maximum
    p_gap_more: float = 0.5  # a pattern with a gap has another (up to three)

    def __post_init__(self) -> None:
        """Probabilities (``p_*``) lie in [0, 1], ranges run low to high, the lattice coverage
        brackets 1 (a ConfigError names the first setting that does not)."""
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name.startswith("p_") and isinstance(v, (int, float)) and not 0 <= v <= 1:
                raise ConfigError(f"{f.name} is a probability, between 0 and 1; got {v}")
            if isinstance(v, tuple) and len(v) == 2 and not v[0] <= v[1]:
                raise ConfigError(f"{f.name} is a range (low, high), got {v}")
        cover = self.lattice_coverage
        if cover is not None and not 0.5 < cover[0] <= 1.0 <= cover[1] < 2.0:
            raise ConfigError(f"lattice_coverage needs 0.5 < low ≤ 1 ≤ high < 2, got {cover}")


@dataclass
class SynthBatch:
    """A batch of synthetic patterns on one grid; ``labels`` follow the Synthesizer's target order."""

    intensity: np.ndarray  # float32 (n, G): counts-like, background included in unmasked mode
    coverage: np.ndarray  # bool (n, G)
    labels: np.ndarray  # uint8 (n, T)
    wavelength: np.ndarray  # float32 (n,) Å
    unmasked: np.ndarray  # bool (n,): raw-integration look (True) or expert-processed (False)
    lattice_scale: np.ndarray  # float32 (n, T): isotropic scale drawn for each target


# ------------------------------------------------------------------------------------- distortions


def log_uniform(
    rng: np.random.Generator, lo: float, hi: float, size: int | tuple[int, ...]
) -> np.ndarray:
    """Log-uniform draws in [lo, hi]."""
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def peak_fwhm_q(
    q: np.ndarray,
    wavelength: np.ndarray,
    instrument_deg: np.ndarray,
    size: np.ndarray,
    strain: np.ndarray,
) -> np.ndarray:
    """FWHM in Q (Å⁻¹): instrument width in 2θ at this wavelength (dQ = 2π/λ·cosθ·d2θ), Scherrer size
    broadening ΔQ = 2πK/L and microstrain ΔQ = εQ, added in quadrature."""
    cos_t = np.sqrt(np.clip(1 - (q * wavelength / (4 * np.pi)) ** 2, 1e-6, 1))
    inst = 2 * np.pi / wavelength * cos_t * np.deg2rad(instrument_deg)
    return np.sqrt(inst**2 + (2 * np.pi * SCHERRER_K / size) ** 2 + (strain * q) ** 2)


def strained_q(
    q0: np.ndarray, scale: np.ndarray, aniso: np.ndarray, c_frac: np.ndarray
) -> np.ndarray:
    """Peak Q after an isotropic lattice scale and an axial strain difference ``aniso`` (c vs a):
    Q = Q0 / scale · (1 − aniso · (cos²φ − 1/3)), φ the angle between the reflection and c*."""
    return q0 / scale * (1 - aniso * (c_frac - 1 / 3))


def zero_shift(q: np.ndarray, wavelength: np.ndarray, offset_deg: np.ndarray) -> np.ndarray:
    """Q after a 2θ zero error of ``offset_deg``; NaN beyond the wavelength's reach."""
    return tth_rad_to_q(q_to_tth_rad(q, wavelength) + np.deg2rad(offset_deg), wavelength)


def march_dollase(c_frac: np.ndarray, r: np.ndarray) -> np.ndarray:
    """March–Dollase texture weight (r² cos²φ + sin²φ / r)^(−3/2) along c* (φ to c*)."""
    return (r**2 * c_frac + (1 - c_frac) / r) ** -1.5


def few_crystal_factors(
    multiplicity: np.ndarray, crystals: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Random intensity factors (mean 1) when only ``crystals`` grains diffract: each reflection sees
    about crystals·multiplicity/24 grains in diffraction condition, a gamma-distributed sum that
    vanishes for some reflections when that number is below one."""
    k = np.clip(crystals * multiplicity / 24.0, 0.03, 1e4)
    out = np.maximum(1 + rng.standard_normal(k.shape) / np.sqrt(k), 0)  # gamma ≈ normal for k ≥ 30
    few = k < 30
    out[few] = rng.standard_gamma(k[few]) / k[few]
    return out


def grain_peaks(
    grains: np.ndarray,
    q: np.ndarray,
    fwhm: np.ndarray,
    eta: np.ndarray,
    height: np.ndarray,
    config: SynthConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split each reflection seen by fewer than ``config.spotty_grains`` grains into grain peaks.

    A reflection with ``g`` grains in diffraction condition becomes ``clip(Poisson(g), 1,
    max_grain_peaks)`` narrower peaks that share its integrated intensity (gamma shares of shape
    ``g / n``: even for many grains, erratic for a few), each displaced by a normal draw of
    ``grain_spread`` × FWHM. Returns, per output peak, the index of its source reflection and its
    Q, FWHM and height; reflections with enough grains come back unchanged.
    """
    spotty = grains < config.spotty_grains
    idx = np.flatnonzero(spotty)
    n_sub = np.clip(rng.poisson(grains[idx]), 1, config.max_grain_peaks)
    src = np.repeat(idx, n_sub)
    share = rng.standard_gamma(np.repeat(np.maximum(grains[idx] / n_sub, 0.3), n_sub))
    starts = np.cumsum(n_sub) - n_sub
    share /= np.maximum(np.repeat(np.add.reduceat(share, starts), n_sub), 1e-30) if idx.size else 1
    width = fwhm[src] * rng.uniform(*config.grain_width, src.size)
    spread = fwhm[src] * rng.uniform(*config.grain_spread, src.size)
    area = height[src] * pseudo_voigt_area(fwhm[src], eta[src])
    smooth = np.flatnonzero(~spotty)
    return (
        np.r_[smooth, src],
        np.r_[q[smooth], q[src] + rng.standard_normal(src.size) * spread],
        np.r_[fwhm[smooth], width],
        np.r_[height[smooth], share * area / pseudo_voigt_area(width, eta[src])],
    )


def absorption(two_theta_rad: np.ndarray, mu_t: np.ndarray) -> np.ndarray:
    """Transmission through a slab of fluid and anvil normal to the beam, relative to 2θ = 0."""
    return np.exp(-mu_t * (1 / np.cos(np.minimum(two_theta_rad, np.deg2rad(80.0))) - 1))


def poisson_noise(mean: np.ndarray, z: np.ndarray, boost: np.ndarray) -> None:
    """Replace ``mean`` (m, G) in place by Poisson-like counts: the inverse Anscombe transform of
    the (correlated) unit normal ``z`` (consumed); ``boost`` (m, 1) ≥ 1 scales the noise above
    counting statistics."""
    np.maximum(mean, 0, out=mean)
    mean += 0.375
    np.sqrt(mean, out=mean)
    z *= 0.5 * boost
    mean += z
    np.square(mean, out=mean)
    mean -= 0.375 + 0.25 * boost**2


def fluid_background(
    q: np.ndarray, centers: np.ndarray, widths: np.ndarray, amps: np.ndarray
) -> np.ndarray:
    """Liquid-water (and dense fluid) scattering: Gaussian humps; water's first two maxima sit near
    Q ≈ 2.0–2.5 and 2.9–3.4 Å⁻¹ (Skinner et al. 2013), shifting with pressure and temperature."""
    return (
        amps[..., None] * np.exp(-0.5 * ((q - centers[..., None]) / widths[..., None]) ** 2)
    ).sum(-2)


def cell_background(
    q: np.ndarray, p: dict[str, np.ndarray], q_range: tuple[float, float]
) -> np.ndarray:
    """Smooth scattering of the cell and air: constant, Compton-like rise A(1−exp(−(Q/q_c)²)),
    low-Q (beam stop, small-angle) decay A·exp(−(Q−Q0)/τ) from the range's start Q0 (flat below it,
    where the coarse background grid pads the range), and a random
    cubic (Chebyshev over ``q_range``)."""
    t = (q - q_range[0]) / (q_range[1] - q_range[0]) * 2 - 1
    poly = p["poly"] @ np.stack([np.ones_like(t), t, 2 * t**2 - 1, 4 * t**3 - 3 * t])
    return (
        p["const"][:, None]
        + p["compton"][:, None] * (1 - np.exp(-((q / p["compton_q"][:, None]) ** 2)))
        + p["lowq"][:, None] * np.exp(-np.maximum(q - q_range[0], 0.0) / p["lowq_tau"][:, None])
        + poly
    )


def aperture(tth_deg: np.ndarray, cutoff_deg: np.ndarray, softness_deg: np.ndarray) -> np.ndarray:
    """Soft high-angle cut of the cell's opening (anvil seats) on everything scattered inside it."""
    return 1 / (1 + np.exp((tth_deg - cutoff_deg) / softness_deg))


def render_peaks(
    m: int,
    g: int,
    row: np.ndarray,
    center: np.ndarray,
    fwhm: np.ndarray,
    eta: np.ndarray,
    height: np.ndarray,
    smooth: np.ndarray | None = None,
) -> np.ndarray:
    """(m, g) pseudo-Voigt peaks in rows ``row``; ``center`` and ``fwhm`` in grid points.

    Multi-resolution: a peak of FWHM f is evaluated on level ℓ (every 2^ℓ-th grid point) where f/2^ℓ
    is 3–6 points, in a window of :data:`PEAK_WINDOW` level points (≥ ±2.6 FWHM) lowered by its edge
    value so it ends continuously. Levels are summed coarse to fine by linear interpolation, so every
    peak costs the same whatever its width. ``smooth`` (m, len(level_q(grid, BG_LEVEL))), a smooth
    curve at resolution :data:`BG_LEVEL`, joins the sum there.
    """
    pad, k = PEAK_WINDOW, PEAK_WINDOW
    level = np.clip(np.floor(np.log2(np.maximum(fwhm, 1e-6) / 3.0)), 0, N_LEVELS - 1).astype(int)
    ar = np.arange(k, dtype=np.float32)
    acc: np.ndarray | None = None
    for lv in range(N_LEVELS - 1, -1, -1):
        step = 2**lv
        n_l = -(-g // step) + 2 * pad + 2
        buf = np.zeros((m, n_l), np.float32) if acc is None else _upsample2(acc, n_l, pad)
        if smooth is not None and lv == BG_LEVEL:
            buf += smooth
        sel = np.flatnonzero(level == lv)
        c = center[sel] / step + pad
        inside = (c > k // 2) & (c < n_l - k // 2 - 1)
        sel, c = sel[inside], c[inside]
        if sel.size:
            start = np.floor(c).astype(np.int64) - (k // 2 - 1)
            w = (fwhm[sel] / step).astype(np.float32)[:, None]
            e = eta[sel].astype(np.float32)[:, None]
            x = (start - c).astype(np.float32)[:, None] + ar
            x /= w
            edge = pseudo_voigt((k / 2) / w, e)
            val = pseudo_voigt(x, e)
            val -= edge
            val *= (height[sel] / (1 - edge[:, 0])).astype(np.float32)[:, None]
            np.maximum(val, 0, out=val)
            idx = (row[sel] * n_l + start)[:, None] + np.arange(k)
            np.add.at(buf.reshape(-1), idx.reshape(-1), val.reshape(-1))
        acc = buf
    return buf[:, pad : pad + g]  # the finest level's sum (N_LEVELS ≥ 1)


def _upsample2(coarse: np.ndarray, n_fine: int, pad: int) -> np.ndarray:
    """Linear interpolation to twice the resolution; fine index a ↔ coarse index pad/2 + a/2."""
    fine = np.empty((coarse.shape[0], n_fine), np.float32)
    n_even, n_odd = (n_fine + 1) // 2, n_fine // 2
    c = coarse[:, pad // 2 :]
    fine[:, 0::2] = c[:, :n_even]
    odd = fine[:, 1::2]
    np.add(c[:, :n_odd], c[:, 1 : n_odd + 1], out=odd)
    odd *= 0.5
    return fine


def level_q(grid: QGrid, level: int) -> np.ndarray:
    """Q of the points of resolution level ``level`` (every 2^level-th grid point, with the padding
    :func:`render_peaks` uses)."""
    n_l = -(-grid.n // 2**level) + 2 * PEAK_WINDOW + 2
    return grid.q_min + (np.arange(n_l) - PEAK_WINDOW) * 2**level * grid.step


def expand(coarse: np.ndarray, level: int, g: int) -> np.ndarray:
    """Values at resolution ``level`` (as :func:`level_q`) linearly interpolated onto ``g`` grid points."""
    for lv in range(level - 1, -1, -1):
        coarse = _upsample2(coarse, -(-g // 2**lv) + 2 * PEAK_WINDOW + 2, PEAK_WINDOW)
    return coarse[:, PEAK_WINDOW : PEAK_WINDOW + g]


def noise_banks(rng: np.random.Generator, length: int) -> np.ndarray:
    """(len(NOISE_BOXES), length) unit-variance normal noise, white and smoothed by two passes of a
    box (≈ Gaussian): integrated detector bins are correlated (hdac: over ~0.05° 2θ, 2–4 points)."""
    banks = np.empty((len(NOISE_BOXES), length), np.float32)
    banks[0] = rng.standard_normal(length, dtype=np.float32)
    for i, b in enumerate(NOISE_BOXES):
        if b == 1:
            banks[i] = banks[0]
            continue
        x = banks[0].astype(np.float64)
        for _ in range(2):  # box filter of width b by differences of a cumulative sum (periodic)
            c = np.cumsum(np.concatenate([x[-b:], x]))
            x = (c[b:] - c[:-b]) / b
        kernel = np.convolve(np.ones(b), np.ones(b)) / b**2
        banks[i] = x / np.sqrt((kernel**2).sum())
    return banks


# -------------------------------------------------------------------------------------- generator


@dataclass
class _Table:
    """Reflections of all phases, concatenated: phase index, Q at scale 1, intensity without LP,
    multiplicity, cos² of the angle to c*, and whether LP still has to be applied."""

    phase: np.ndarray
    q0: np.ndarray
    intensity: np.ndarray
    multiplicity: np.ndarray
    c_frac: np.ndarray
    lp: np.ndarray


def c_fraction(hkl: np.ndarray, cell: tuple[float, ...]) -> np.ndarray:
    """cos² of the angle between each reciprocal vector hkl and c*."""
    a, b, c, al, be, ga = cell
    al, be, ga = np.deg2rad([al, be, ga])
    cx = c * np.cos(be)
    cy = c * (np.cos(al) - np.cos(be) * np.cos(ga)) / np.sin(ga)
    direct = np.array(
        [
            [a, 0, 0],
            [b * np.cos(ga), b * np.sin(ga), 0],
            [cx, cy, np.sqrt(max(c**2 - cx**2 - cy**2, 1e-12))],
        ]
    )
    recip = np.linalg.inv(direct).T
    g = hkl @ recip
    cstar = recip[2] / np.linalg.norm(recip[2])
    return (g @ cstar) ** 2 / np.maximum((g**2).sum(1), 1e-12)


def _build_table(
    phases: Sequence[Phase], q_lo: float, q_hi: float, max_per_phase: int = 40
) -> _Table:
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("phase", "q0", "i", "m", "c", "lp")}
    for p, phase in enumerate(phases):
        bare = phase.reflections(None)
        with_lp = phase.reflections(1.0)
        keep = (bare.q > q_lo) & (bare.q < q_hi) & (bare.intensity > 0)
        inten = bare.intensity[keep]
        # strongest reflections as seen at a typical 0.6 Å, where LP weights low Q most
        tth = q_to_tth_rad(bare.q[keep], 0.6, s_max=0.999)
        typical = inten * lorentz_polarization(np.rad2deg(tth))
        order = np.sort(np.argsort(typical)[::-1][:max_per_phase])
        order = order[typical[order] >= 2e-3 * typical.max()] if order.size else order
        idx = np.flatnonzero(keep)[order]
        needs_lp = not np.allclose(with_lp.intensity[: len(bare.q)], bare.intensity)
        hkl = np.array(bare.hkl, dtype=float).reshape(-1, 3)[idx] if bare.hkl else np.zeros((0, 3))
        cols["phase"].append(np.full(idx.size, p))
        cols["q0"].append(bare.q[idx])
        cols["i"].append(bare.intensity[idx])
        cols["m"].append(bare.multiplicity[idx].astype(float))
        cols["c"].append(c_fraction(hkl, phase.cell) if idx.size else np.zeros(0))
        cols["lp"].append(np.full(idx.size, needs_lp))
    cat = {k: np.concatenate(v) for k, v in cols.items()}
    return _Table(
        cat["phase"].astype(int), cat["q0"], cat["i"], cat["m"], cat["c"], cat["lp"].astype(bool)
    )


def random_cell_reflections(
    rng: np.random.Generator, q_max: float = 8.0, q_min: float = 0.3, max_refl: int = 40
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A random-cell phase: (Q, intensity, multiplicity, cos² to c*) of the strongest ``max_refl``
    reflections of a random lattice (cubic to monoclinic, 2.5–14 Å), each hkl family kept with
    probability 0.6 (random extinctions) at a random, multiplicity-weighted intensity. Stands for
    any phase no library holds."""
    system = rng.choice(["cubic", "tetragonal", "hexagonal", "orthorhombic", "monoclinic"])
    a, b, c = np.exp(rng.uniform(np.log(2.5), np.log(14.0), 3))
    al = be = ga = 90.0
    if system == "cubic":
        b = c = a
    elif system in ("tetragonal", "hexagonal"):
        b = a
        ga = 120.0 if system == "hexagonal" else 90.0
    elif system == "monoclinic":
        be = rng.uniform(95.0, 120.0)
    cell = (a, b, c, al, be, ga)
    r = np.arange(-7, 8)
    hkl = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3).astype(float)
    hkl = hkl[np.abs(hkl).sum(1) > 0]
    alr, ber, gar = np.deg2rad([al, be, ga])
    cx = c * np.cos(ber)
    cy = c * (np.cos(alr) - np.cos(ber) * np.cos(gar)) / np.sin(gar)
    direct = np.array(
        [
            [a, 0, 0],
            [b * np.cos(gar), b * np.sin(gar), 0],
            [cx, cy, np.sqrt(max(c**2 - cx**2 - cy**2, 1e-12))],
        ]
    )
    g = hkl @ np.linalg.inv(direct).T
    q = 2 * np.pi * np.linalg.norm(g, axis=1)
    keep = (q > q_min) & (q < q_max)
    hkl, q = hkl[keep], q[keep]
    key = np.round(q, 4)
    uq, first, mult = np.unique(key, return_index=True, return_counts=True)
    q, hkl = q[first], hkl[first]
    on = rng.random(q.size) < 0.6
    q, hkl, mult = q[on], hkl[on], mult[on]
    inten = mult * rng.exponential(1.0, q.size) * np.exp(-0.5 * (q / (2 * np.pi)) ** 2)
    order = np.sort(np.argsort(inten)[::-1][:max_refl])
    q, hkl, mult, inten = q[order], hkl[order], mult[order], inten[order]
    return (
        q,
        inten / max(inten.max(initial=0.0), 1e-30) * 100,
        mult.astype(float),
        c_fraction(hkl, cell),
    )


def _random_table(
    n: int,
    first: int,
    q_lo: float,
    q_hi: float,
    decoy_q: np.ndarray,
    p_decoy: float,
    seed: int = 17,
) -> _Table:
    """A pool of ``n`` random-cell phases (phase indices from ``first``); a share ``p_decoy`` of them
    is scaled so that its strongest line falls on one of ``decoy_q`` (a target's strong reflections:
    one coinciding line is no phase)."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("phase", "q0", "i", "m", "c")}
    for k in range(n):
        q, inten, mult, cf = random_cell_reflections(
            rng, q_max=q_hi * 1.2, q_min=max(q_lo * 0.8, 0.2)
        )
        if q.size == 0:
            continue
        if decoy_q.size and rng.random() < p_decoy:
            q = q * rng.choice(decoy_q) * rng.uniform(0.995, 1.005) / q[np.argmax(inten)]
        cols["phase"].append(np.full(q.size, first + k))
        for name, v in zip("qimc", (q, inten, mult, cf), strict=True):
            cols["q0" if name == "q" else name].append(v)
    cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}
    return _Table(
        cat["phase"].astype(int),
        cat["q0"],
        cat["i"],
        cat["m"],
        cat["c"],
        np.zeros(cat["q0"].size, bool),
    )


def default_distractors(targets: Sequence[Phase]) -> list[Phase]:
    """The library's distractor phases, minus any that shares a name with a target."""
    from ..physics.phases import DISTRACTORS, EXTRA_DISTRACTORS, get_phase

    names = {t.name.lower() for t in targets}
    return [get_phase(n) for n in DISTRACTORS + EXTRA_DISTRACTORS if n not in names]


@dataclass(frozen=True)
class _Patterns:
    """One chunk's per-pattern draws (each an array over its patterns)."""

    unmasked: np.ndarray
    wl: np.ndarray  # Å
    q_lo: np.ndarray  # measured range, Å⁻¹
    q_hi: np.ndarray
    inst: np.ndarray  # instrument FWHM, degrees
    zero: np.ndarray  # 2θ zero offset, degrees
    mu_t: np.ndarray  # absorption
    counts: np.ndarray  # background maximum
    boost: np.ndarray  # noise over Poisson
    cut: np.ndarray  # aperture cut-off and softness, degrees
    soft: np.ndarray
    sigma: np.ndarray  # noise σ at the background maximum


@dataclass(frozen=True)
class _Phases:
    """One chunk's per-phase draws (patterns × phases)."""

    drawn: np.ndarray  # present or drawn in as a trace
    labeled: np.ndarray  # present (traces are labeled absent)
    scale: np.ndarray
    aniso: np.ndarray
    size: np.ndarray
    strain: np.ndarray
    eta: np.ndarray
    march: np.ndarray
    crystals: np.ndarray
    strength: np.ndarray


@dataclass
class _Peaks:
    """A chunk's peaks, flat, in parts: pattern row, Q, FWHM (Å⁻¹), Lorentzian fraction, height."""

    rows: list[np.ndarray]
    q: list[np.ndarray]
    w: list[np.ndarray]
    eta: list[np.ndarray]
    height: list[np.ndarray]

    def add(
        self, count: np.ndarray, q: np.ndarray, w: np.ndarray, eta: np.ndarray, h: np.ndarray
    ) -> None:
        """The first ``count[i]`` peaks of row ``i`` of each (patterns × slots) array."""
        i, j = np.nonzero(np.arange(q.shape[1]) < count[:, None])
        self.rows.append(i)
        for part, v in zip((self.q, self.w, self.eta, self.height), (q, w, eta, h), strict=True):
            part.append(v[i, j])


class Synthesizer:
    """Labeled synthetic patterns of ``targets`` (present or absent) with ``distractors`` and every
    distortion; ``distractors=None`` takes the library's non-target phases. Chunks of ``chunk``
    patterns (each with its own child generator, so results do not depend on ``workers``) run on
    ``workers`` threads (numpy releases the GIL in its array loops)."""

    def __init__(
        self,
        targets: Sequence[Phase],
        grid: QGrid = DEFAULT_GRID,
        distractors: Sequence[Phase] | None = None,
        config: SynthConfig | None = None,
        chunk: int = 256,
        workers: int = 2,
    ) -> None:
        self.targets = list(targets)
        self.distractors = (
            default_distractors(self.targets) if distractors is None else list(distractors)
        )
        self.grid = grid
        self.config = config or SynthConfig()
        self.chunk = chunk
        self.workers = workers
        phases = self.targets + self.distractors
        cfg = self.config
        n_rand = cfg.random_phases if cfg.random_phases and self.distractors else 0
        self._n_library = len(phases)
        ranges = [self._lattice_range(p) for p in phases] + [(0.99, 1.01)] * n_rand
        self.lattice_ranges = np.array(ranges, dtype=float)

        def per_phase(
            values: list[tuple[float, float] | None], default: tuple[float, float]
        ) -> np.ndarray:
            return np.array([v or default for v in values] + [default] * n_rand, dtype=float)

        self._size = per_phase([p.priors.crystallite_size for p in phases], cfg.crystallite_size)
        self._strain = per_phase([p.priors.microstrain for p in phases], cfg.microstrain)
        self._crystals = per_phase([p.priors.crystals for p in phases], cfg.crystals)
        self._p_trace = np.array([t.priors.p_trace for t in self.targets])
        self._pbr = per_phase([p.priors.peak_to_background for p in phases], cfg.peak_to_background)
        lo = grid.q_min * self.lattice_ranges[:, 0].min() * 0.97
        hi = grid.q_max * self.lattice_ranges[:, 1].max() * 1.03
        tab = _build_table(phases, lo, hi)
        strongest = np.zeros(len(phases))
        np.maximum.at(strongest, tab.phase, tab.intensity)
        self._decoys = np.flatnonzero(
            (tab.phase < len(self.targets)) & (tab.intensity >= 0.2 * strongest[tab.phase])
        )
        if n_rand:
            inside = (tab.q0[self._decoys] > grid.q_min) & (tab.q0[self._decoys] < grid.q_max)
            extra = _random_table(
                n_rand, len(phases), lo, hi, tab.q0[self._decoys[inside]], cfg.p_random_decoy
            )
            tab = _Table(
                *(
                    np.concatenate([getattr(tab, f), getattr(extra, f)])
                    for f in ("phase", "q0", "intensity", "multiplicity", "c_frac", "lp")
                )
            )
        self.table = tab
        self._refl_count = np.bincount(tab.phase, minlength=len(self.lattice_ranges))
        self._refl_start = np.r_[0, np.cumsum(self._refl_count)[:-1]]
        self._bg_q = level_q(grid, BG_LEVEL)

    def _lattice_range(self, phase: Phase) -> tuple[float, float]:
        """The phase's isotropic lattice-scale range: a ``lattice_ranges`` entry (exact name) as is;
        else its prior (``priors.lattice_range``) widened to cover ``lattice_coverage``."""
        cfg = self.config
        if phase.name in cfg.lattice_ranges:
            lo, hi = cfg.lattice_ranges[phase.name]
            return (float(lo), float(hi))
        lo, hi = phase.priors.lattice_range
        if cfg.lattice_coverage is not None:
            lo, hi = min(lo, cfg.lattice_coverage[0]), max(hi, cfg.lattice_coverage[1])
        return (float(lo), float(hi))

    def _strength(
        self,
        unmasked: np.ndarray,
        counts: np.ndarray,
        sigma: np.ndarray,
        snr: tuple[float, float],
        pbr: tuple[Any, Any],
        shape: tuple[int, int],
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Peak heights in counts: SNR × σ for the masked look, peak-to-background × counts for the
        unmasked one (``pbr`` bounds may be per column arrays), never below ``min_snr`` σ."""
        u = rng.random(shape)
        lo_s, hi_s, lo_b, hi_b = np.log(snr[0]), np.log(snr[1]), np.log(pbr[0]), np.log(pbr[1])
        by_snr = np.exp(lo_s + u * (hi_s - lo_s)) * sigma[:, None]
        by_pbr = np.exp(lo_b + u * (hi_b - lo_b)) * counts[:, None]
        h = np.where(unmasked[:, None], by_pbr, by_snr)
        return np.maximum(h, self.config.min_snr * sigma[:, None])

    def sample(self, n: int, rng: np.random.Generator) -> SynthBatch:
        """``n`` patterns drawn with ``rng`` (deterministic for a given seed, n and chunk size)."""
        t, g = len(self.targets), self.grid.n
        batch = SynthBatch(
            np.empty((n, g), np.float32),
            np.empty((n, g), bool),
            np.empty((n, t), np.uint8),
            np.empty(n, np.float32),
            np.empty(n, bool),
            np.empty((n, t), np.float32),
        )
        banks = noise_banks(rng, int(np.clip(n * g // 16, 1 << 16, 1 << 19)) + g)
        starts = range(0, n, self.chunk)
        seeds = rng.integers(0, 2**63 - 1, len(starts))

        def run(i: int) -> None:
            sl = slice(starts[i], min(n, starts[i] + self.chunk))
            self._chunk(batch, sl, banks, np.random.default_rng(seeds[i]))

        if self.workers > 1 and len(starts) > 1:
            with ThreadPoolExecutor(self.workers) as pool:
                list(pool.map(run, range(len(starts))))
        else:
            for i in range(len(starts)):
                run(i)
        return batch

    def _chunk(
        self, batch: SynthBatch, sl: slice, banks: np.ndarray, rng: np.random.Generator
    ) -> None:
        """Fill ``batch[sl]``: the vectorised generator, one pass over a cache-sized chunk, stage by
        stage (per pattern, per phase, reflections, confusers, background, noise, coverage), each
        stage drawing from ``rng`` in turn."""
        m = sl.stop - sl.start
        pat = self._draw_patterns(m, rng)
        phs = self._draw_phases(pat, rng)
        peaks, visible = self._reflections(pat, phs, rng)
        self._confusers(pat, phs, peaks, rng)
        bg = self._background(pat, rng)
        out = batch.intensity[sl]
        self._render(out, peaks, bg, pat, banks, rng)
        cov = batch.coverage[sl]
        self._coverage(cov, pat, rng)
        out *= cov
        n_t = len(self.targets)
        batch.labels[sl] = visible[:, :n_t]
        batch.wavelength[sl] = pat.wl
        batch.unmasked[sl] = pat.unmasked
        batch.lattice_scale[sl] = phs.scale[:, :n_t]

    def _draw_patterns(self, m: int, rng: np.random.Generator) -> _Patterns:
        """Per pattern: mode, beam, measured range, counts and noise."""
        cfg = self.config
        unmasked = rng.random(m) < cfg.p_unmasked
        lab = rng.random(m) < cfg.p_lab
        wl = np.where(
            lab,
            rng.choice(cfg.lab_wavelengths, m),
            log_uniform(rng, *cfg.synchrotron_wavelength, m),
        )
        tr = np.where(lab[:, None], np.array(cfg.lab_tth), np.array(cfg.synchrotron_tth))
        q_lo = tth_to_q(rng.uniform(tr[:, 0], tr[:, 1]), wl)
        q_hi = tth_to_q(np.minimum(rng.uniform(tr[:, 2], tr[:, 3]), 179.0), wl)
        inst = log_uniform(rng, *cfg.instrument_fwhm_deg, m)
        zero = rng.normal(0, cfg.zero_offset_deg, m)
        mu_t = rng.uniform(*cfg.absorption_mu_t, m)
        counts = np.where(
            unmasked, log_uniform(rng, *cfg.counts_unmasked, m), log_uniform(rng, *cfg.counts, m)
        )
        boost = np.where(
            unmasked,
            rng.uniform(*cfg.noise_boost_unmasked, m),
            log_uniform(rng, *cfg.noise_boost_masked, m),
        )
        cut, soft = (
            rng.uniform(*cfg.aperture_cutoff_deg, m),
            rng.uniform(*cfg.aperture_softness_deg, m),
        )
        sigma = boost * np.sqrt(counts)  # noise σ at the background maximum
        return _Patterns(
            unmasked, wl, q_lo, q_hi, inst, zero, mu_t, counts, boost, cut, soft, sigma
        )

    def _draw_phases(self, pat: _Patterns, rng: np.random.Generator) -> _Phases:
        """Per pattern and phase: presence, lattice, broadening, texture, crystals, strength, and
        traces (absent targets drawn in far under the detection limit, labeled absent)."""
        cfg = self.config
        m = pat.wl.size
        n_t, n_p = len(self.targets), len(self.lattice_ranges)
        present = np.zeros((m, n_p), bool)
        present[:, :n_t] = rng.random((m, n_t)) < cfg.p_present
        for a, b, probs in (
            (n_t, self._n_library, cfg.p_distractor_phase),
            (self._n_library, n_p, cfg.p_random_phase),
        ):
            if b > a:  # k of these phases, k drawn from probs
                k = rng.choice(len(probs), m, p=np.asarray(probs) / np.sum(probs))
                rank = np.argsort(rng.random((m, b - a)), axis=1).argsort(axis=1)
                present[:, a:b] = rank < k[:, None]
        scale = rng.uniform(self.lattice_ranges[:, 0], self.lattice_ranges[:, 1], (m, n_p))
        aniso = rng.normal(0, cfg.anisotropic_strain, (m, n_p))
        size = np.exp(rng.uniform(np.log(self._size[:, 0]), np.log(self._size[:, 1]), (m, n_p)))
        strain = rng.uniform(self._strain[:, 0], self._strain[:, 1], (m, n_p))
        eta = rng.uniform(*cfg.eta, (m, n_p))
        textured = rng.random((m, n_p)) < cfg.p_texture
        march = np.where(textured, log_uniform(rng, *cfg.march_r, (m, n_p)), 1.0)
        crystals = np.exp(
            rng.uniform(np.log(self._crystals[:, 0]), np.log(self._crystals[:, 1]), (m, n_p))
        )
        strength = self._strength(
            pat.unmasked, pat.counts, pat.sigma, cfg.snr, tuple(self._pbr.T), (m, n_p), rng
        )
        trace = np.zeros((m, n_p), bool)
        trace[:, :n_t] = (
            ~present[:, :n_t] & pat.unmasked[:, None] & (rng.random((m, n_t)) < self._p_trace)
        )
        strength = np.where(
            trace, log_uniform(rng, *cfg.trace_pbr, (m, n_p)) * pat.counts[:, None], strength
        )
        return _Phases(
            present | trace, present, scale, aniso, size, strain, eta, march, crystals, strength
        )

    def _reflections(
        self, pat: _Patterns, phs: _Phases, rng: np.random.Generator
    ) -> tuple[_Peaks, np.ndarray]:
        """The peaks of every drawn phase's reflections (flat: pattern ``pr``, reflection ``pc``,
        phase ``ph``; spotty reflections split into grain peaks), and which labeled phases show."""
        tab = self.table
        m, n_p = phs.scale.shape
        pr, pp = np.nonzero(phs.drawn)  # the table is ordered by phase: expand each phase's rows
        cnt = self._refl_count[pp]
        pr = np.repeat(pr, cnt)
        pc = np.repeat(self._refl_start[pp] - np.cumsum(cnt) + cnt, cnt) + np.arange(cnt.sum())
        ph = tab.phase[pc]
        wl_r = pat.wl[pr]
        qr = strained_q(tab.q0[pc], phs.scale[pr, ph], phs.aniso[pr, ph], tab.c_frac[pc])
        qr = zero_shift(qr, wl_r, pat.zero[pr])
        ok = np.isfinite(qr) & (qr > pat.q_lo[pr]) & (qr < pat.q_hi[pr])
        pr, pc, ph, qr, wl_r = pr[ok], pc[ok], ph[ok], qr[ok], wl_r[ok]
        tth = q_to_tth_rad(qr, wl_r, s_max=0.9999)
        inten = tab.intensity[pc] * np.where(tab.lp[pc], lorentz_polarization(np.rad2deg(tth)), 1.0)
        inten *= march_dollase(tab.c_frac[pc], phs.march[pr, ph])
        inten *= few_crystal_factors(tab.multiplicity[pc], phs.crystals[pr, ph], rng)
        inten *= absorption(tth, pat.mu_t[pr])
        fwhm = peak_fwhm_q(qr, wl_r, pat.inst[pr], phs.size[pr, ph], phs.strain[pr, ph])
        e = phs.eta[pr, ph]
        height = inten / pseudo_voigt_area(fwhm, e)
        key = pr * n_p + ph
        top = np.zeros(m * n_p)
        np.maximum.at(top, key, height)
        # the strongest peak of each phase stands ``strength`` counts high
        height *= phs.strength.reshape(-1)[key] / np.maximum(top[key], 1e-30)
        height *= aperture(np.rad2deg(tth), pat.cut[pr], pat.soft[pr])
        height, visible = self._shown(height, key, pr, ph, phs.labeled, pat.sigma)
        # few grains: spotty reflections become a few narrow grain peaks
        grains = phs.crystals[pr, ph] * tab.multiplicity[pc] / 24.0
        src, qr, fwhm, height = grain_peaks(grains, qr, fwhm, e, height, self.config, rng)
        return _Peaks([pr[src]], [qr], [fwhm], [e[src]], [height]), visible

    def _shown(
        self,
        height: np.ndarray,
        key: np.ndarray,
        pr: np.ndarray,
        ph: np.ndarray,
        labeled: np.ndarray,
        sigma: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """A target is there only where its own reflections show: a present target's
        ``min_shown``-th strongest reflection (or its weakest, with fewer in range) is raised to
        ``shown_snr`` σ (its strongest by at most ``max_shown_boost``); where that is not enough it
        is labeled absent. The raised heights, and the labeled phases that show (patterns ×
        phases)."""
        cfg = self.config
        m, n_p = labeled.shape
        n_in = np.zeros(m * n_p)
        np.add.at(n_in, key, 1.0)
        order = np.lexsort((-height, key))
        ks = key[order]
        rank = np.arange(ks.size) - np.searchsorted(ks, ks)
        kth = np.full(m * n_p, np.inf)
        np.minimum.at(kth, key, height)  # groups with fewer than min_shown reflections: the weakest
        at_k = rank == cfg.min_shown - 1
        kth[ks[at_k]] = height[order][at_k]
        lift = (ph < len(self.targets)) & labeled[pr, ph]
        factor = np.clip(
            cfg.shown_snr * sigma[pr] / np.maximum(kth[key], 1e-30), 1.0, cfg.max_shown_boost
        )
        height = np.where(lift, height * factor, height)
        shown = np.zeros(m * n_p)
        np.add.at(shown, key, height >= 0.999 * cfg.shown_snr * sigma[pr])
        enough = (shown >= np.minimum(cfg.min_shown, n_in)) & (n_in > 0)
        return height, enough.reshape(m, n_p) & labeled

    def _confusers(
        self, pat: _Patterns, phs: _Phases, peaks: _Peaks, rng: np.random.Generator
    ) -> None:
        """Add to ``peaks``: unknown phases (random peak sets), anvil spots (some on a target's
        strong reflection, at this pattern's lattice), amorphous humps, and leftovers of
        background subtraction in the masked look."""
        cfg, grid, tab = self.config, self.grid, self.table
        m = pat.wl.size
        unmasked, counts, sigma = pat.unmasked, pat.counts, pat.sigma
        nr = cfg.random_peaks[1]
        n_rand = rng.integers(cfg.random_peaks[0], nr + 1, m) * (rng.random(m) < cfg.p_random_peaks)
        peaks.add(
            n_rand,
            rng.uniform(grid.q_min, grid.q_max, (m, nr)),
            log_uniform(rng, *cfg.random_peak_fwhm_q, (m, nr)),
            rng.uniform(*cfg.eta, (m, nr)),
            self._strength(
                unmasked, counts, sigma, cfg.random_peak_snr, cfg.random_peak_pbr, (m, nr), rng
            ),
        )
        ns = cfg.spots[1]
        n_spots = rng.integers(cfg.spots[0], ns + 1, m) * (rng.random(m) < cfg.p_spots)
        sq = rng.uniform(grid.q_min, grid.q_max, (m, ns))
        if self._decoys.size and cfg.p_decoy > 0 and n_spots.any():
            d = rng.choice(self._decoys, (m, ns))
            dq = tab.q0[d] / phs.scale[np.arange(m)[:, None], tab.phase[d]]
            sq = np.where(rng.random((m, ns)) < cfg.p_decoy, dq, sq)
        s_inst = pat.inst[:, None] * rng.uniform(*cfg.spot_fwhm_factor, (m, ns))
        peaks.add(
            np.where(unmasked, n_spots, rng.random(m) < cfg.p_spots_masked),
            sq,
            peak_fwhm_q(sq, pat.wl[:, None], s_inst, np.full((m, ns), 1e12), np.zeros((m, ns))),
            rng.uniform(*cfg.spot_eta, (m, ns)),
            self._strength(unmasked, counts, sigma, cfg.spot_snr, cfg.spot_pbr, (m, ns), rng),
        )
        amorph = rng.integers(1, 3, m) * (rng.random(m) < cfg.p_amorphous)
        peaks.add(
            amorph,
            rng.uniform(grid.q_min, grid.q_max, (m, 2)),
            log_uniform(rng, *cfg.amorphous_fwhm_q, (m, 2)),
            np.zeros((m, 2)),
            self._strength(
                unmasked, counts, sigma, cfg.amorphous_snr, cfg.amorphous_pbr, (m, 2), rng
            ),
        )
        nb = cfg.residual_bumps[1]
        sign = np.where(rng.random((m, nb)) < cfg.p_residual_positive, 1.0, -1.0)
        peaks.add(
            np.where(unmasked, 0, rng.integers(cfg.residual_bumps[0], nb + 1, m)),
            rng.uniform(grid.q_min, grid.q_max, (m, nb)),
            log_uniform(rng, *cfg.residual_fwhm_q, (m, nb)),
            np.zeros((m, nb)),
            sign * log_uniform(rng, *cfg.residual_snr, (m, nb)) * sigma[:, None],
        )

    def _background(self, pat: _Patterns, rng: np.random.Generator) -> np.ndarray:
        """The background at resolution ``BG_LEVEL`` (fluid humps, cell, aperture), ``counts`` at
        its maximum inside the grid (patterns × points, float32)."""
        cfg, grid = self.config, self.grid
        m = pat.wl.size
        kq = self._bg_q
        ktth = q_to_tth_rad(kq, pat.wl[:, None], s_max=0.9999)
        q1 = rng.uniform(*cfg.fluid_q, m)
        centers = np.stack([q1, q1 + rng.uniform(*cfg.fluid_separation_q, m)], 1)
        widths = np.stack(
            [rng.uniform(*cfg.fluid_width_q[0], m), rng.uniform(*cfg.fluid_width_q[1], m)], 1
        )
        amps = (
            np.stack([np.ones(m), rng.uniform(*cfg.fluid_second_amp, m)], 1)
            * rng.uniform(*cfg.fluid_amp, m)[:, None]
        )
        cellp = {
            "const": rng.uniform(*cfg.cell_const, m) * (rng.random(m) < cfg.p_cell_const),
            "compton": rng.uniform(*cfg.cell_compton, m),
            "compton_q": rng.uniform(*cfg.cell_compton_q, m),
            "lowq": log_uniform(rng, *cfg.cell_lowq, m),
            "lowq_tau": log_uniform(rng, *cfg.cell_lowq_tau, m),
            "poly": rng.normal(0, cfg.cell_poly_sd, (m, 4)),
        }
        bg = fluid_background(kq, centers, widths, amps) + cell_background(
            kq, cellp, (grid.q_min, grid.q_max)
        )
        bg = np.maximum(bg, 0) * aperture(np.rad2deg(ktth), pat.cut[:, None], pat.soft[:, None])
        inside = (kq >= grid.q_min) & (kq <= grid.q_max)
        bg /= np.maximum(bg[:, inside].max(1, keepdims=True), 1e-12)
        return (np.maximum(bg, cfg.background_floor) * pat.counts[:, None]).astype(np.float32)

    def _render(
        self,
        out: np.ndarray,
        peaks: _Peaks,
        bg: np.ndarray,
        pat: _Patterns,
        banks: np.ndarray,
        rng: np.random.Generator,
    ) -> None:
        """Peaks on the background into ``out``, noise on everything; the masked look then loses
        its background (subtracted with a small level error, baseline left at 0–4 σ)."""
        cfg, grid = self.config, self.grid
        m = pat.wl.size
        q, w = np.concatenate(peaks.q), np.concatenate(peaks.w)
        out[:] = render_peaks(
            m,
            grid.n,
            np.concatenate(peaks.rows),
            grid.index(q),
            w / grid.step,
            np.concatenate(peaks.eta),
            np.concatenate(peaks.height),
            smooth=bg,
        )
        level = rng.choice(len(NOISE_BOXES), m, p=NOISE_BOX_P)
        offset = rng.integers(0, banks.shape[1] - grid.n, m)
        z = np.lib.stride_tricks.sliding_window_view(banks, grid.n, axis=1)[level, offset]
        poisson_noise(out, z, pat.boost.astype(np.float32)[:, None])
        masked = np.flatnonzero(~pat.unmasked)
        if masked.size:
            level_error = 1 + rng.normal(0, cfg.subtraction_level_error, masked.size)
            est = bg[masked] * level_error.astype(np.float32)[:, None]
            undershoot = rng.uniform(*cfg.subtraction_undershoot, masked.size) * pat.sigma[masked]
            est -= undershoot.astype(np.float32)[:, None]
            out[masked] -= expand(est, BG_LEVEL, grid.n)

    def _coverage(self, cov: np.ndarray, pat: _Patterns, rng: np.random.Generator) -> None:
        """``cov`` (patterns × points): the measured range, less up to three detector gaps."""
        cfg, grid = self.config, self.grid
        idx = np.arange(grid.n)
        lo, hi = grid.index(pat.q_lo)[:, None], grid.index(pat.q_hi)[:, None]
        np.logical_and(idx >= lo, idx <= hi, out=cov)
        gap_rows = np.flatnonzero(rng.random(pat.wl.size) < cfg.p_gaps)
        for _ in range(3):
            c = grid.index(rng.uniform(grid.q_min, grid.q_max, gap_rows.size))[:, None]
            half = (rng.uniform(*cfg.gap_width_q, gap_rows.size) / grid.step / 2)[:, None]
            cov[gap_rows] &= np.abs(idx - c) > half
            gap_rows = gap_rows[rng.random(gap_rows.size) < cfg.p_gap_more]


# ------------------------------------------------------------------------------------------ output


def _xy_text(tth: np.ndarray, y: np.ndarray, wavelength: float, labels: dict[str, int]) -> str:
    meta = json.dumps(
        {"wavelength": wavelength * 1e-10, "generator": "xrdmtl.synth", "labels": labels}
    )
    head = (
        f"# == pyFAI calibration ==\n# Wavelength: {wavelength * 1e-10:.6e} m\n"
        f"# == xrdmtl synthetic pattern ==\n# {meta}\n#  2th_deg             I\n"
    )
    body = "\n".join(f"{a:.6f} {b:.6g}" for a, b in zip(tth, y, strict=True))
    return head + body + "\n"


def write_patterns(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    *,
    synthesizer: Synthesizer | None = None,
    fmt: str = "xy",
    wavelength: float | None = None,
    plot: bool = False,
    block: int = 2048,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write ``n`` synthetic patterns to ``out_dir`` with ``labels.csv`` (deterministic by seed).

    ``fmt="xy"``: one pyFAI-style text file per pattern in 2θ (degrees) at ``wavelength`` (Å; default
    each pattern's own), only covered points. ``fmt="h5"``: one ``patterns.h5`` holding the Q grid and
    every array of :class:`SynthBatch`; ``labels.csv`` then names ``patterns.h5::i``. ``plot`` also
    saves ``examples.png``. Files are written atomically. Returns the path of ``labels.csv``.
    """
    from ..physics.phases import TARGETS, get_phase

    if fmt not in ("xy", "h5"):
        raise ValueError(f"unknown format {fmt!r} (xy or h5)")
    syn = synthesizer or Synthesizer([get_phase(t) for t in TARGETS])
    names = [p.name for p in syn.targets]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width = len(str(max(n - 1, 0)))
    rows: list[str] = []
    first: SynthBatch | None = None
    with ExitStack() as stack:  # h5: closed, then moved into place (or removed on error)
        h5 = None
        if fmt == "h5":
            import h5py

            h5_tmp = stack.enter_context(atomic_path(out / "patterns.h5"))
            h5 = stack.enter_context(h5py.File(h5_tmp, "w"))
            h5["q"] = syn.grid.values
            h5["q"].attrs["unit"] = "q_A^-1"
            h5.attrs["phases"] = json.dumps(names)
            h5.attrs["seed"] = seed
            for key, dtype in (
                ("intensity", "f4"),
                ("coverage", "?"),
                ("labels", "u1"),
                ("lattice_scale", "f4"),
            ):
                cols = syn.grid.n if key in ("intensity", "coverage") else len(names)
                h5.create_dataset(
                    key, (n, cols), dtype, compression="gzip" if key == "coverage" else None
                )
            h5.create_dataset("wavelength", (n,), "f4")
            h5.create_dataset("unmasked", (n,), "?")
        for start in range(0, n, block):
            b = syn.sample(min(block, n - start), rng)
            first = first or b
            for i in range(len(b.labels)):
                k = start + i
                lab = {nm: int(v) for nm, v in zip(names, b.labels[i], strict=True)}
                if h5 is not None:
                    rows.append(f"patterns.h5::{k}," + ",".join(map(str, lab.values())))
                    continue
                wl = float(b.wavelength[i]) if wavelength is None else wavelength
                tth = q_to_tth(syn.grid.values, wl)
                keep = b.coverage[i] & np.isfinite(tth)
                name = f"synth_{k:0{width}d}.xy"
                text = _xy_text(tth[keep], b.intensity[i][keep], wl, lab)
                write_text(out / name, text)
                rows.append(f"{name}," + ",".join(map(str, lab.values())))
            if h5 is not None:
                sl = slice(start, start + len(b.labels))
                for key in (
                    "intensity",
                    "coverage",
                    "labels",
                    "lattice_scale",
                    "wavelength",
                    "unmasked",
                ):
                    h5[key][sl] = getattr(b, key)
            if progress:
                progress(start + len(b.labels))
    labels = out / "labels.csv"
    text = "file," + ",".join(names) + "\n" + "\n".join(rows) + "\n"
    write_text(labels, text)
    if plot and first is not None:
        plot_examples(first, syn, out / "examples.png")
    return labels


def plot_examples(batch: SynthBatch, syn: Synthesizer, path: str | Path, k: int = 6) -> Path:
    """A figure of the first ``k`` patterns of ``batch`` with reference sticks of the targets they
    hold (at the lattice scale drawn for each)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io.plots import phase_color, save_figure

    k = min(k, len(batch.labels))
    fig, axes = plt.subplots(k, 1, figsize=(9, 1.9 * k), sharex=True, squeeze=False)
    q = syn.grid.values
    for i, ax in enumerate(axes[:, 0]):
        y = np.where(batch.coverage[i], batch.intensity[i], np.nan)
        ax.plot(q, y, color="black", lw=0.6)
        lo, hi = np.nanmin(y), np.nanmax(y)
        for j, phase in enumerate(syn.targets):
            if not batch.labels[i, j]:
                continue
            r = phase.reflections(float(batch.wavelength[i]))
            qs = r.q / batch.lattice_scale[i, j]
            keep = (qs > q[0]) & (qs < q[-1])
            ax.vlines(
                qs[keep],
                lo,
                lo + 0.3 * (hi - lo) * r.intensity[keep] / 100,
                color=phase_color(j),
                lw=1.0,
                label=phase.name,
            )
        look = "unmasked" if batch.unmasked[i] else "masked"
        ax.set_title(f"{look}, λ = {batch.wavelength[i]:.3f} Å", fontsize=8)
        if batch.labels[i].any():
            ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("Q (Å⁻¹)")
    fig.tight_layout()
    return save_figure(fig, path)
