"""2D detector frames of a hydrothermal diamond-anvil cell, simulated from crystallography alone.

The physics is independent of the 1D generator (:mod:`xrdmtl.synthesis.patterns`), so that a model trained on 1D
synthetic patterns meets an honest domain shift here. One :class:`FrameSimulator` holds one geometry
(a pyFAI detector with Pilatus module gaps, distance, PONI, small tilts, wavelength); per-pixel 2θ, χ,
solid angle and polarisation are computed once. A frame is built from

- Debye rings: per-phase radial profiles (pseudo-Voigt ⊛ pixel box) on a fine 2θ grid, gathered per
  pixel and multiplied by a smooth azimuthal texture; rings with few diffracting crystallites are drawn
  as individual spots at random azimuths instead (spotty rings, random intensities, missing rings);
- single-crystal diamond-anvil spots: two anvils at random orientations, the reflections closest to the
  Ewald sphere projected onto the detector, plus a few stray bright spots; hot pixels;
- isotropic background: a large, smooth cell + fluid background (base, low-angle air, broad hump and
  shoulder) that the rings stand a few per cent to a few times above, as in the measured HDAC
  patterns; absorption by the cell;
- Poisson counting noise, a 20-bit counter, and module gaps set to -1 (the Pilatus convention).

The true spot mask (anvil spots above noise + hot pixels) comes with every frame.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import fftconvolve

from ..atomic import atomic_path, write_text
from ..physics.phases import DISTRACTORS, TARGETS, Phase, get_phase
from ..physics.profiles import pseudo_voigt
from ..physics.units import q_to_tth, tth_to_q

FINE_STEP = 0.002  # degrees 2θ: radial profiles are evaluated on this grid and gathered per pixel
N_CHI = 720  # azimuthal bins of the texture modulation (0.5°)
SATURATION = 2**20 - 1  # Pilatus 20-bit counter
GAP_VALUE = -1  # value of module-gap pixels (Pilatus convention)
SMOOTH_SPOTS = 300.0  # expected spots on a ring above which it is drawn as a smooth ring


@dataclass(frozen=True)
class FrameGeometry:
    """Detector and geometry: a Pilatus-like 768×768 detector (172 µm pixels, module gaps),
    ``distance`` in m, the PONI at ``poni_pixel`` (row, column), tilts ``rot1``/``rot2`` in rad and
    ``wavelength`` in Å (0.561 Å: the paper's HDAC beamline, 22.1 keV)."""

    wavelength: float = 0.561
    distance: float = 0.14
    poni_pixel: tuple[float, float] = (395.3, 371.8)
    rot1: float = 0.008
    rot2: float = -0.006
    shape: tuple[int, int] = (768, 768)
    pixel_size: float = 172e-6

    def integrator(self) -> Any:
        """A pyFAI ``AzimuthalIntegrator`` for this geometry."""
        from pyFAI.detectors import Pilatus
        from pyFAI.integrator.azimuthal import AzimuthalIntegrator

        det = Pilatus(pixel1=self.pixel_size, pixel2=self.pixel_size, max_shape=self.shape)
        return AzimuthalIntegrator(
            dist=self.distance,
            poni1=self.poni_pixel[0] * self.pixel_size,
            poni2=self.poni_pixel[1] * self.pixel_size,
            rot1=self.rot1,
            rot2=self.rot2,
            detector=det,
            wavelength=self.wavelength * 1e-10,
        )


@dataclass(frozen=True)
class FrameConfig:
    """Ranges of the random frame parameters (drawn per frame, uniform unless said otherwise).

    Every range is set from the paper's measured HDAC patterns (``shared/data/hdac``, λ = 0.561 Å;
    29 patterns, each integrated unmasked and expert-masked) or from physics, so that a simulated
    frame integrated to 1D looks like them:

    - **Background** (``background``, ``hump*``, ``tilt``): unmasked hdac patterns sit on a large,
      smooth background of 75–2400 (arbitrary units) per bin, a broad hump (fluid + anvil Compton) centred at
      Q ≈ 2.2–2.6 Å⁻¹ (2θ 11–13°), 0.2× (``n_`` series: 1850 → 2350) to 5× (``r_`` series: 80 → 240)
      the base, with a shoulder near Q ≈ 3.6 Å⁻¹ (2θ ≈ 18.5°); the end of the 5–25° window lies at
      0.7–1.9× its start (``tilt`` < 0: Compton from the anvils rising with Q). The base count
      level is set by the noise: the hdac integrations' point-to-point noise is 1.5·10⁻⁴ (``n_``,
      background ≈ 2000 units) to 6·10⁻⁴ (``r_``, ≈ 200 units) of the background, which on this
      768² detector takes 2·10³–4·10⁴ counts per pixel (Poisson; the hdac units are not raw counts).
    - **Ring strength** (``ring_ratio``): the strongest ring's peak over the local background. hdac:
      calcite / bastnaesite 0.04–1.25 (masked peak heights 75–2400 over a background of ≈ 1900);
      rhenium either weak (0.02–0.05: ``r_90``, ``r_106``) or very strong (15–27: ``r_79``, ``r_94``,
      ``r_98``) — hence a log-uniform 0.02–30 for it; non-target phases like the minor ones.
    - **Peak widths** (``fwhm_q``, in Q so that they hold at any wavelength): hdac calcite and
      bastnaesite FWHM 0.09–0.21° 2θ at 0.561 Å (0.017–0.04 Å⁻¹ including the 0.07° pixel), the
      rhenium gasket (cold-worked metal, strain-broadened) 0.22–0.32°.
    - **Crystallites** (``spots_per_ring``): hdac rings integrate to smooth, complete powder peaks
      with irregular relative intensities — many crystallites, not a handful; a ring's total
      intensity does not depend on how many crystallites share it (fewer means larger grains). The
      rhenium gasket is fine-grained cold-worked metal: its rings are smooth in every hdac pattern.
    - **Other phases** (``p_distractor``, ``distractor_ratio``): hdac no-target patterns are bare
      fluid; unexplained peaks in the masked rhenium patterns reach ≈ 7 % of the background.
    - **Anvil spots** (``anvil_*``, ``stray_spots``): diamond spots saturate pixels, but integrated
      over a whole ring they are small: the unmasked hdac patterns of the no-target class show sharp
      leaks of 2–4 % of the background in 2 of 11 patterns and none above 0.5 % in the rest. A spot
      holds ``anvil_strength`` × (background counts of one pixel), 0–3 reflections per anvil.
    - **Hot pixels** (``hot_*``): count with the exposure like the background; a few per frame.
    """

    p_target: float = 0.5  # probability that each target phase is present
    p_distractor: float = 0.04  # probability that each distractor phase is present
    ring_ratio: tuple[float, float] = (
        0.03,
        1.5,
    )  # log-uniform strongest-ring peak / local background
    ring_ratio_phase: tuple[tuple[str, tuple[float, float]], ...] = (
        ("rhenium", (0.02, 30.0)),
        ("diamond", (0.02, 0.5)),
    )
    distractor_ratio: tuple[float, float] = (0.01, 0.2)
    spots_per_ring: tuple[float, float] = (
        30.0,
        5000.0,
    )  # log-uniform diffracting crystallites per ring
    spots_phase: tuple[tuple[str, tuple[float, float]], ...] = (("rhenium", (1000.0, 20000.0)),)
    grain_spot_max: float = 50.0  # cap of one crystallite spot's counts / base counts per pixel
    grain_sigma: tuple[float, float] = (0.6, 1.1)  # pixels
    grain_scatter: float = (
        1.0  # a crystallite spot's radial scatter, in units of the default (≈ FWHM)
    )
    grain_profile: float = (
        0.0  # a spot's σ at least this × the ring's FWHM σ (1: a line's normal width)
    )
    fwhm_q: tuple[float, float] = (0.012, 0.032)  # Å⁻¹ pseudo-Voigt FWHM before the pixel box
    fwhm_q_phase: tuple[tuple[str, tuple[float, float]], ...] = (("rhenium", (0.038, 0.058)),)
    eta: tuple[float, float] = (0.1, 0.7)  # Lorentzian fraction of the pseudo-Voigt
    texture: tuple[float, float] = (0.0, 0.7)  # amplitude of the azimuthal intensity modulation
    background: tuple[float, float] = (2e3, 4e4)  # log-uniform base counts per pixel
    hump: tuple[float, float] = (0.2, 5.0)  # log-uniform height of the broad hump over the base
    hump_q: tuple[float, float] = (2.2, 2.6)  # Å⁻¹, centre of the hump
    hump_sigma: tuple[float, float] = (0.7, 1.4)  # Å⁻¹
    shoulder: tuple[float, float] = (0.1, 0.5)  # height of the Q ≈ 3.6 Å⁻¹ shoulder over the hump's
    tilt: tuple[float, float] = (-0.05, 0.03)  # relative fall of the base per Å⁻¹ (< 0: rising)
    air: tuple[float, float] = (0.0, 0.15)  # low-angle air scattering, relative to the base
    absorption: tuple[float, float] = (0.0, 0.8)  # μt of fluid + downstream anvil along the beam
    anvil_spots: tuple[int, int] = (0, 3)  # reflections per anvil (two anvils)
    stray_spots: tuple[int, int] = (0, 1)  # bright spots at random positions
    anvil_strength: tuple[float, float] = (
        20.0,
        500.0,
    )  # log-uniform spot counts / base counts per pixel
    anvil_sigma: tuple[float, float] = (0.8, 1.6)  # pixels
    anvil_tilt: float = 4.0  # degrees: anvil [001] axis off the beam
    hot_pixels: tuple[int, int] = (0, 10)
    hot_strength: tuple[float, float] = (10.0, 300.0)  # log-uniform hot-pixel counts / base counts
    polarization: float = 0.95
    # --- used by other presets (see HOLDOUT); the defaults leave the frames above unchanged
    shoulder_q: tuple[float, float] = (3.4, 3.8)  # Å⁻¹, centre of the shoulder
    lattice: tuple[float, float] | None = None  # lattice scale of every phase (overrides its range)
    aniso: float = 0.0  # c-axis vs a-axis strain difference, uniform in ±this
    p_march: float = 0.0  # March–Dollase preferred orientation (ring intensities, not azimuth)
    march_r: tuple[float, float] = (0.5, 2.0)  # log-uniform
    p_unknown: float = 0.0  # a frame holds rings of 1–2 random-cell phases (unknown to any library)
    unknown_ratio: tuple[float, float] = (0.02, 1.0)  # log-uniform strongest ring / background
    min_visible: int = (
        0  # redraw a frame where a present target shows fewer reflections than this at
    )
    visible_snr: float = (
        5.0  # this Poisson SNR in the 1D integration (few crystals can hide a phase)
    )

    def ratio_for(self, name: str, target: bool) -> tuple[float, float]:
        return dict(self.ring_ratio_phase).get(
            name, self.ring_ratio if target else self.distractor_ratio
        )

    def fwhm_for(self, name: str) -> tuple[float, float]:
        return dict(self.fwhm_q_phase).get(name, self.fwhm_q)

    def spots_for(self, name: str) -> tuple[float, float]:
        return dict(self.spots_phase).get(name, self.spots_per_ring)


HOLDOUT_WAVELENGTH = (
    0.62  # Å (20 keV): a wavelength neither the 1D synthesis nor hdac draws exactly
)
HOLDOUT = FrameConfig(
    # A family of frames no model is tuned on (``benchmarks/bench_holdout.py``): other widths
    # (0.02–0.45° 2θ at 0.62 Å for every phase, gasket included), lattices ±2 % with c/a changes of
    # ±1 %, March–Dollase texture on ring intensities and stronger azimuthal texture, a handful of
    # crystallites to fine powder (rhenium too), water's two maxima on a Compton rise, more anvil
    # spots, and rings of random-cell phases (unknown to any library) in 15 % of the frames.
    ring_ratio_phase=(("rhenium", (0.02, 30.0)),),
    distractor_ratio=(0.01, 0.5),
    p_distractor=0.03,
    spots_per_ring=(3.0, 10000.0),
    spots_phase=(),
    fwhm_q=(0.004, 0.08),
    fwhm_q_phase=(),
    eta=(0.0, 0.9),
    lattice=(0.98, 1.02),
    aniso=0.01,
    p_march=0.5,
    march_r=(0.6, 1.6),
    texture=(0.0, 0.9),
    hump=(0.3, 4.0),
    hump_q=(1.9, 2.2),
    hump_sigma=(0.4, 0.8),
    shoulder=(0.3, 0.8),
    shoulder_q=(2.8, 3.2),
    tilt=(-0.15, -0.02),
    anvil_spots=(0, 5),
    stray_spots=(0, 2),
    p_unknown=0.15,
    min_visible=5,
)
FEW_CRYSTAL = replace(
    # The HOLDOUT family with every phase from a handful of crystallites (issue 29): about half of
    # each phase's reflections missing at random, the rest at erratic (exponential) heights, each
    # at its exact position and with a line's normal width (no radial scatter of the spots).
    HOLDOUT,
    spots_per_ring=(1.0, 30.0),
    grain_scatter=0.0,
    grain_profile=1.0,
)


@dataclass
class FrameSample:
    """One simulated frame: ``frame`` (int32 counts, gaps -1), ``spot_mask`` (anvil spots + hot
    pixels), ``labels`` (uint8 per target). ``spot_counts`` holds the expected counts of anvil spots
    and hot pixels and ``ring_pixels`` marks pixels where ring signal stands above the noise: the
    references for judging a mask."""

    frame: np.ndarray
    spot_mask: np.ndarray
    labels: np.ndarray
    spot_counts: np.ndarray
    ring_pixels: np.ndarray
    info: dict = field(default_factory=dict)
    ring_counts: np.ndarray | None = (
        None  # expected counts of the sample's rings and crystallite spots
    )
    # with ``FrameSimulator(keep_parts=True)``: expected counts per pixel (flat, gaps 0) of each
    # phase drawn (rings and its crystallite spots) and of the smooth background
    phase_counts: dict[str, np.ndarray] | None = None
    background_counts: np.ndarray | None = None


class FrameSimulator:
    """Random HDAC detector frames for one geometry.

    ``targets`` and ``distractors`` are phases (default: the built-in :data:`~xrdmtl.physics.phases.TARGETS`
    and :data:`~xrdmtl.physics.phases.DISTRACTORS`); a phase's lattice scale is drawn from its
    ``priors.lattice_range`` (La-bastnaesite's cell floats by several percent).
    """

    def __init__(
        self,
        targets: Sequence[Phase] | None = None,
        distractors: Sequence[Phase] | None = None,
        geometry: FrameGeometry | None = None,
        config: FrameConfig | None = None,
        keep_parts: bool = False,
    ) -> None:
        self.keep_parts = (
            keep_parts  # record each phase's expected counts (FrameSample.phase_counts)
        )
        self.targets = list(targets) if targets is not None else [get_phase(n) for n in TARGETS]
        self.distractors = (
            list(distractors) if distractors is not None else [get_phase(n) for n in DISTRACTORS]
        )
        self.geometry = geometry or FrameGeometry()
        self.config = config or FrameConfig()
        self.ai = self.geometry.integrator()
        g = self.geometry
        self.shape = g.shape
        tth = self.ai.array_from_unit(g.shape, "center", "2th_deg").astype(np.float64).ravel()
        chi = self.ai.center_array(g.shape, unit="chi_rad", scale=False).ravel()
        self.gap = np.asarray(self.ai.detector.mask, dtype=bool).ravel()
        self.tth_max = float(tth.max()) + 1.0
        self.fine = np.arange(0.0, self.tth_max, FINE_STEP)
        self.gidx = np.rint(tth / FINE_STEP).astype(np.int32)
        self.cidx = (((chi + np.pi) / (2 * np.pi)) * N_CHI).astype(np.int32) % N_CHI
        self.order = np.argsort(tth)
        self.tth_sorted = tth[self.order]
        self.tth = tth
        # pixels per degree of 2θ along each ring (what a ring's integrated counts spread over)
        density = np.bincount(self.gidx, minlength=self.fine.size).astype(float) / FINE_STEP
        self.density = fftconvolve(density, np.ones(51) / 51, mode="same")
        sa = self.ai.solidAngleArray(g.shape).ravel()
        pol = self.ai.polarization(g.shape, factor=self.config.polarization).ravel()
        self.gain = (sa * pol).astype(np.float32)
        self.pixel_deg = float(np.degrees(g.pixel_size / g.distance))
        self._affine = self._pixel_affine()

    def _pixel_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """(origin, [e1, e2]) with lab position (z along the beam) = origin + row·e1 + col·e2."""
        z, y, x = self.ai.calc_pos_zyx(d1=np.array([0.0, 1.0, 0.0]), d2=np.array([0.0, 0.0, 1.0]))
        pos = np.stack([x, y, z], axis=1)
        return pos[0], np.stack([pos[1] - pos[0], pos[2] - pos[0]], axis=1)

    @cached_property
    def _diamond_g(self) -> np.ndarray:
        """Reciprocal-lattice vectors (Å⁻¹, crystal frame) of diamond (Fd-3m) within reach."""
        a = float(get_phase("diamond").cell[0])
        r = np.arange(-8, 9)
        hkl = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
        odd = (hkl % 2 == 1).all(1)
        even = (hkl % 2 == 0).all(1) & (hkl.sum(1) % 4 == 0)
        hkl = hkl[(odd | even) & (np.abs(hkl).sum(1) > 0)]
        g = hkl / a
        return g[
            np.linalg.norm(g, axis=1)
            < 2 * np.sin(np.radians(self.tth_max / 2)) / self.geometry.wavelength
        ]

    @cached_property
    def _reflections(self) -> dict[int, tuple[np.ndarray, ...]]:
        """Per phase (by id): unstrained Q, relative intensity, multiplicity at the wavelength and
        cos² of each reflection's angle to c*."""
        from .patterns import c_fraction

        out: dict[int, tuple[np.ndarray, ...]] = {}
        for p in self.targets + self.distractors:
            r = p.reflections(self.geometry.wavelength)
            hkl = np.array(r.hkl, dtype=float).reshape(-1, 3)
            out[id(p)] = (
                np.asarray(r.q),
                np.asarray(r.intensity) / 100.0,
                np.asarray(r.multiplicity, dtype=float),
                c_fraction(hkl, p.cell) if len(hkl) else np.zeros(0),
            )
        return out

    def _kernel_half(self, fwhm: float) -> int:
        """Half-length (fine-grid steps) of a line's profile of ``fwhm`` degrees."""
        return int(np.ceil((10 * fwhm + self.pixel_deg) / FINE_STEP))

    def spot_scatter_deg(self, fwhm: float) -> float:
        """The radial scatter (σ, degrees 2θ) of one crystallite spot about its ring, for a line of
        ``fwhm`` degrees: ``grain_scatter`` × about a FWHM (a twentieth of the profile's span)."""
        return self.config.grain_scatter * (2 * self._kernel_half(fwhm) + 1) * FINE_STEP / 20

    def _kernel(self, fwhm: float, eta: float) -> np.ndarray:
        """Pseudo-Voigt (``fwhm`` degrees) convolved with one pixel's 2θ width, peak 1, on the fine grid."""
        half = self._kernel_half(fwhm)
        x = np.arange(-half, half + 1) * FINE_STEP
        box = np.ones(max(1, int(round(self.pixel_deg / FINE_STEP))))
        k = np.convolve(pseudo_voigt(x / fwhm, eta), box / box.size, mode="same")
        return k / k.max()

    def sample(self, rng: np.random.Generator) -> FrameSample:
        """Draw one random frame (with ``min_visible``, redrawn until every present target shows
        that many reflections at ``visible_snr``)."""
        while True:
            s = self._sample(rng)
            names = [t.name for t in self.targets]
            if all(s.info[n]["visible"] >= self.config.min_visible for n in names if n in s.info):
                return s

    def _sample(self, rng: np.random.Generator) -> FrameSample:
        cfg = self.config
        n_t = len(self.targets)
        present = rng.random(n_t) < cfg.p_target
        extra = rng.random(len(self.distractors)) < cfg.p_distractor
        phases = [p for p, on in zip(self.targets, present, strict=True) if on]
        phases += [p for p, on in zip(self.distractors, extra, strict=True) if on]
        fine_q = tth_to_q(self.fine, self.geometry.wavelength)
        absorb = np.exp(-rng.uniform(*cfg.absorption) * (1 / np.cos(np.radians(self.fine)) - 1))
        base = float(np.exp(rng.uniform(*np.log(cfg.background))))
        iso = self._isotropic(fine_q, base, rng) * absorb
        npix = self.tth.size
        rings = np.zeros(npix, np.float32)
        spot_pos, spot_amp, spot_sig = [], [], []
        parts: dict[str, np.ndarray] = {}
        info: dict[str, Any] = {"phases": [p.name for p in phases], "background": round(base, 2)}
        items = [
            (
                p.name,
                self._reflections[id(p)],
                self._lattice(p),
                cfg.ratio_for(p.name, p in self.targets),
            )
            for p in phases
        ]
        if cfg.p_unknown and rng.random() < cfg.p_unknown:
            from .patterns import random_cell_reflections

            for k in range(rng.integers(1, 3)):
                q, rel, mult, cf = random_cell_reflections(rng, q_max=float(fine_q.max()))
                if q.size == 0:  # every reflection of a small cell extinguished: no phase
                    continue
                items.append(
                    (f"unknown{k}", (q, rel / rel.max(), mult, cf), (1.0, 1.0), cfg.unknown_ratio)
                )
                info["phases"].append(f"unknown{k}")
        for name, refl, lat, ratio in items:  # a handful of phases per frame, each vectorised
            smooth, pos, amp, sig, meta = self._phase(name, refl, lat, ratio, rng, absorb, iso)
            rings += smooth
            spot_pos.append(pos)
            spot_amp.append(amp)
            spot_sig.append(sig)
            info[name] = meta
            if self.keep_parts:  # the same counts as below, phase by phase (no random draw)
                part = (smooth + _splat(self.shape, pos, amp, sig, 3)) * self.gain
                parts[name] = np.where(self.gap, 0, part).astype(np.float32)
        clean = iso[self.gidx].astype(np.float32) + rings
        if spot_pos:
            grains = _splat(
                self.shape,
                np.concatenate(spot_pos),
                np.concatenate(spot_amp),
                np.concatenate(spot_sig),
                3,
            )
            rings += grains
            clean += grains
        clean *= self.gain
        anvil = self._anvil_spots(rng, base)
        hot = np.zeros(npix, np.float32)
        n_hot = rng.integers(cfg.hot_pixels[0], cfg.hot_pixels[1] + 1)
        hot_idx = rng.choice(np.flatnonzero(~self.gap), n_hot, replace=False)
        lo, hi = np.log(cfg.hot_strength)
        hot[hot_idx] = base * np.exp(rng.uniform(lo, hi, n_hot))
        frame = rng.poisson(clean + anvil).astype(np.int64)
        frame[hot_idx] = np.maximum(frame[hot_idx], hot[hot_idx].astype(np.int64))
        frame = np.minimum(frame, SATURATION).astype(np.int32)
        frame[self.gap] = GAP_VALUE
        noise = np.sqrt(clean + 1.0)
        spot_mask = ((anvil >= 3 * noise) | (hot > 0)) & ~self.gap
        ring_pixels = (rings * self.gain >= 3 * noise) & ~self.gap
        labels = present.astype(np.uint8)
        return FrameSample(
            frame.reshape(self.shape),
            spot_mask.reshape(self.shape),
            labels,
            np.where(self.gap, 0, anvil + hot).reshape(self.shape).astype(np.float32),
            ring_pixels.reshape(self.shape),
            info,
            np.where(self.gap, 0, rings * self.gain).reshape(self.shape).astype(np.float32),
            parts if self.keep_parts else None,
            np.where(self.gap, 0, iso[self.gidx] * self.gain) if self.keep_parts else None,
        )

    def _isotropic(self, q: np.ndarray, base: float, rng: np.random.Generator) -> np.ndarray:
        """Smooth cell + fluid background on the fine grid (counts per pixel, before absorption):
        a base falling slowly with Q, low-angle air scattering, the broad hump and its shoulder
        (shapes and ranges: :class:`FrameConfig`)."""
        cfg = self.config
        loguni = lambda r: float(np.exp(rng.uniform(*np.log(r))))  # noqa: E731
        flat = np.clip(1 - rng.uniform(*cfg.tilt) * (q - 1.0), 0.3, None)
        air = rng.uniform(*cfg.air) * np.exp(-self.fine / rng.uniform(2, 6))
        hump = loguni(cfg.hump)
        shape = np.exp(-0.5 * ((q - rng.uniform(*cfg.hump_q)) / rng.uniform(*cfg.hump_sigma)) ** 2)
        shoulder = rng.uniform(*cfg.shoulder) * np.exp(
            -0.5 * ((q - rng.uniform(*cfg.shoulder_q)) / rng.uniform(0.25, 0.45)) ** 2
        )
        return base * (flat + air + hump * (shape + shoulder))

    def _lattice(self, phase: Phase) -> tuple[float, float]:
        cfg = self.config
        return cfg.lattice if cfg.lattice is not None else phase.priors.lattice_range

    def _phase(
        self,
        name: str,
        refl: tuple[np.ndarray, ...],
        lattice: tuple[float, float],
        ratio_range: tuple[float, float],
        rng: np.random.Generator,
        absorb: np.ndarray,
        iso: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        """One phase's smooth rings (per pixel, before gain) and its crystallite spots; its strongest
        ring peaks at a random multiple (``ratio_range``) of the background ``iso`` under it."""
        cfg = self.config
        q, rel, mult, c_frac = refl
        scale = rng.uniform(*lattice)
        aniso = rng.uniform(-cfg.aniso, cfg.aniso) if cfg.aniso else 0.0
        q = q / scale * (1 - aniso * (c_frac - 1 / 3))
        if cfg.p_march and rng.random() < cfg.p_march:
            r = float(np.exp(rng.uniform(*np.log(cfg.march_r))))
            rel = rel * (r**2 * c_frac + (1 - c_frac) / r) ** -1.5
        tth = q_to_tth(q, self.geometry.wavelength)
        ok = np.isfinite(tth) & (tth < self.tth_max - 0.5)
        tth, rel, mult = tth[ok], rel[ok], mult[ok]
        fidx = np.clip(np.rint(tth / FINE_STEP).astype(int), 0, self.fine.size - 1)
        ratio = float(np.exp(rng.uniform(*np.log(ratio_range))))
        strongest = int(np.argmax(rel * absorb[fidx])) if rel.size else 0
        level = (
            ratio
            * float(iso[fidx[strongest]])
            / max(float((rel * absorb[fidx]).max(initial=0.0)), 1e-12)
            if rel.size
            else 0.0
        )
        fwhm = rng.uniform(*cfg.fwhm_for(name)) * self.geometry.wavelength / (2 * np.pi)
        fwhm_deg = float(np.degrees(fwhm))
        kernel = self._kernel(fwhm_deg, rng.uniform(*cfg.eta))
        peak = level * rel * absorb[fidx]
        expected = np.exp(rng.uniform(*np.log(cfg.spots_for(name)))) * mult / 12.0
        smooth = expected >= SMOOTH_SPOTS
        # smooth rings: peak heights deposited on the fine grid, convolved with the profile
        x = tth[smooth] / FINE_STEP
        i0 = np.floor(x).astype(int)
        frac = x - i0
        dep = np.bincount(
            np.r_[i0, i0 + 1],
            np.r_[peak[smooth] * (1 - frac), peak[smooth] * frac],
            minlength=self.fine.size + 1,
        )[: self.fine.size]
        profile = fftconvolve(dep, kernel, mode="same")
        chi = np.linspace(-np.pi, np.pi, N_CHI, endpoint=False)
        m = np.arange(1, 4)
        amp = rng.uniform(*cfg.texture) * rng.dirichlet(np.ones(3))
        texture = 1 + (amp * np.cos(np.outer(chi, m) + rng.uniform(0, 2 * np.pi, 3))).sum(1)
        texture = np.maximum(texture, 0.05).astype(np.float32)
        rings = profile.astype(np.float32)[self.gidx] * texture[self.cidx]
        # spotty rings: Poisson number of crystallites at random azimuths, exponential intensities
        area = kernel.sum() * FINE_STEP
        total = peak * area * self.density[fidx]
        n = rng.poisson(np.where(smooth, 0.0, expected))
        ring = np.repeat(np.arange(tth.size), n)
        cap = cfg.grain_spot_max * float(
            iso[fidx].max(initial=1.0)
        )  # a grain is far smaller than an anvil
        each = np.minimum(total[ring] / expected[ring] * rng.exponential(1.0, ring.size), cap)
        radial = tth[ring] + rng.normal(0, self.spot_scatter_deg(fwhm_deg), ring.size)
        pix, keep = self._pixels_at(radial, rng)
        pos = self._on_ring(pix, radial[keep], rng.uniform(-0.5, 0.5, (pix.size, 2)))
        amp_spots = (each[keep] * texture[self.cidx[pix]]).astype(np.float32)
        sig = rng.uniform(*cfg.grain_sigma, pix.size)
        sig = np.maximum(sig, cfg.grain_profile * np.degrees(fwhm) / self.pixel_deg / 2.3548)
        # reflections visible in the 1D integration: realised height over the Poisson noise of a bin
        # (two bins per pixel width, ``density`` pixels per degree along the ring)
        realised = np.where(
            smooth, 1.0, np.bincount(ring, each, minlength=tth.size) / np.maximum(total, 1e-30)
        )
        n_bin = np.maximum(self.density[fidx] * self.pixel_deg / 2, 1.0)
        snr = peak * realised * np.sqrt(n_bin / np.maximum(iso[fidx], 1.0))
        meta = {
            "lattice_scale": round(float(scale), 5),
            "aniso": round(float(aniso), 5),
            "ratio": round(ratio, 4),
            "visible": int((snr >= cfg.visible_snr).sum()),
            "spots_per_ring": round(float(expected.max(initial=0.0)), 1),
            "fwhm_deg": round(fwhm_deg, 5),
        }
        return rings, pos, amp_spots, sig, meta

    def _pixels_at(
        self, tth: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """A random pixel on each ring ``tth`` (uniform in azimuth over the detector's arc)."""
        h = self.pixel_deg / 2
        lo = np.searchsorted(self.tth_sorted, tth - h)
        hi = np.searchsorted(self.tth_sorted, tth + h)
        keep = hi > lo
        idx = lo[keep] + (rng.random(int(keep.sum())) * (hi - lo)[keep]).astype(int)
        return self.order[idx], keep

    @cached_property
    def _tth_gradient(self) -> np.ndarray:
        """(pixels, 2): d2θ/d(row, col) in degrees per pixel at each pixel centre."""
        grad = np.gradient(self.tth.reshape(self.shape))
        return np.stack([g.ravel() for g in grad], axis=1)

    def _on_ring(self, pix: np.ndarray, tth: np.ndarray, jitter: np.ndarray) -> np.ndarray:
        """(row, col) of spot centres on their rings: from each pixel ``pix`` along the ring's normal
        to the exact ``tth`` (a crystallite's reflection lies at its 2θ whatever the pixel grid),
        and by the tangential part of ``jitter`` (pixels) along the ring."""
        grad = self._tth_gradient[pix]
        norm2 = np.maximum((grad**2).sum(1), 1e-12)
        along = np.stack([-grad[:, 1], grad[:, 0]], 1) / np.sqrt(norm2)[:, None]
        rows, cols = np.divmod(pix, self.shape[1])
        radial = ((tth - self.tth[pix]) / norm2)[:, None] * grad
        tangential = (jitter * along).sum(1, keepdims=True) * along
        return np.stack([rows, cols], 1) + radial + tangential

    def _anvil_spots(self, rng: np.random.Generator, base: float) -> np.ndarray:
        """Expected counts of diamond single-crystal spots (two anvils) and stray bright spots, each
        holding ``anvil_strength`` times the ``base`` background counts of one pixel."""
        cfg = self.config
        k_in = np.array([0.0, 0.0, 1.0 / self.geometry.wavelength])
        dirs = []
        for _ in range(2):  # upstream and downstream anvil
            rot = _rotation(rng, cfg.anvil_tilt)
            k_out = k_in + self._diamond_g @ rot.T
            excitation = np.abs(np.linalg.norm(k_out, axis=1) - k_in[2])
            forward = k_out[:, 2] > 0
            n = rng.integers(cfg.anvil_spots[0], cfg.anvil_spots[1] + 1)
            best = np.argsort(np.where(forward, excitation, np.inf))[:n]
            dirs.append(k_out[best])
        u = np.concatenate(dirs)
        pos = self._project(u / np.linalg.norm(u, axis=1, keepdims=True))
        n_stray = rng.integers(cfg.stray_spots[0], cfg.stray_spots[1] + 1)
        pos = np.concatenate([pos, rng.uniform(0, 1, (n_stray, 2)) * (np.array(self.shape) - 1)])
        lo, hi = np.log(cfg.anvil_strength)
        counts = (base * np.exp(rng.uniform(lo, hi, len(pos)))).astype(np.float32)
        sigma = rng.uniform(*cfg.anvil_sigma, len(pos))
        return _splat(self.shape, pos, counts, sigma, 8)

    def _project(self, u: np.ndarray) -> np.ndarray:
        """(row, col) where rays along unit vectors ``u`` (lab frame, z along the beam) hit the detector."""
        origin, e = self._affine
        mats = np.concatenate([np.broadcast_to(e, (len(u), 3, 2)), -u[:, :, None]], axis=2)
        sol = np.linalg.solve(mats, np.broadcast_to(-origin, (len(u), 3))[..., None])[..., 0]
        return sol[sol[:, 2] > 0, :2]


def _rotation(rng: np.random.Generator, tilt_deg: float) -> np.ndarray:
    """Random anvil orientation: [001] within ``tilt_deg`` of the beam, any rotation about it."""
    a = rng.uniform(0, 2 * np.pi)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    t = np.radians(rng.uniform(0, tilt_deg))
    b = rng.uniform(0, 2 * np.pi)
    axis = np.array([np.cos(b), np.sin(b), 0.0])
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    tilt = np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * (k @ k)
    return tilt @ rz


def _splat(
    shape: tuple[int, int], pos: np.ndarray, amp: np.ndarray, sigma: np.ndarray, radius: int
) -> np.ndarray:
    """Flat image of 2D Gaussian spots at (row, col) ``pos`` holding ``amp`` counts each."""
    off = np.arange(-radius, radius + 1)
    dr, dc = np.meshgrid(off, off, indexing="ij")
    base = np.rint(pos).astype(int)
    rows = base[:, 0, None] + dr.ravel()
    cols = base[:, 1, None] + dc.ravel()
    d2 = (rows - pos[:, 0, None]) ** 2 + (cols - pos[:, 1, None]) ** 2
    w = np.exp(-0.5 * d2 / sigma[:, None] ** 2)
    w *= (amp / w.sum(1))[:, None]
    inside = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
    flat = rows[inside] * shape[1] + cols[inside]
    return np.bincount(flat, w[inside], minlength=shape[0] * shape[1]).astype(np.float32)


def geometry_for(wavelength: float) -> FrameGeometry:
    """The default geometry at ``wavelength`` (Å), its distance scaled so that the detector covers
    about the same Q range (up to ≈ 6 Å⁻¹ in the corners) at any wavelength."""
    distance = float(np.clip(0.14 * 0.561 / wavelength, 0.08, 0.4))
    return FrameGeometry(wavelength=wavelength, distance=distance)


def simulate_frames(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    wavelength: float = 0.561,
    plot: bool = False,
    simulator: FrameSimulator | None = None,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write ``n`` simulated frames and everything needed to judge a pipeline on them.

    Layout of ``out_dir``: ``geometry.poni``; ``frames/frame_NNNNN.edf`` (int32, gaps -1);
    ``masks/frame_NNNNN.edf`` (true spot mask, 1 = masked); ``labels.csv``
    (``file,<target>…``, files relative to it); ``unmasked/`` and ``masked/`` with each frame
    integrated by pyFAI (its text format, 2θ in degrees) without and with the true mask, each with
    its own ``labels.csv``; ``truth.csv`` with the phases drawn and the lattice scales; with
    ``plot``, ``frames.png``. Deterministic by ``seed``; every file is written atomically.
    """
    import fabio

    from ..io.frames import Integrator

    out = Path(out_dir)
    for sub in ("frames", "masks", "unmasked", "masked"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    sim = simulator or FrameSimulator(geometry=geometry_for(wavelength))
    write_text(out / "geometry.poni", _poni_text(sim.ai))
    integ = Integrator(out / "geometry.poni")
    rng = np.random.default_rng(seed)
    names = [t.name for t in sim.targets]
    labels, truth = [], []
    for i in range(n):
        s = sim.sample(rng)
        name = f"frame_{i:05d}"
        _write_edf(out / "frames" / f"{name}.edf", s.frame, fabio)
        _write_edf(out / "masks" / f"{name}.edf", s.spot_mask.astype(np.uint8), fabio)
        integ.save(s.frame, out / "unmasked" / f"{name}.dat", source=name)
        integ.save(s.frame, out / "masked" / f"{name}.dat", mask=s.spot_mask, source=name)
        labels.append((name, s.labels))
        per_phase = {p: v for p, v in s.info.items() if isinstance(v, dict)}
        truth.append(
            [
                f"frames/{name}.edf",
                " ".join(s.info["phases"]),
                *(
                    " ".join(f"{p}={v[key]}" for p, v in per_phase.items())
                    for key in ("lattice_scale", "aniso", "spots_per_ring")
                ),
                int(s.spot_mask.sum()),
            ]
        )
        if progress:
            progress(i + 1)
    for folder, prefix, ext in (
        ("", "frames/", ".edf"),
        ("unmasked", "", ".dat"),
        ("masked", "", ".dat"),
    ):
        rows = [[f"{prefix}{name}{ext}", *map(int, lab)] for name, lab in labels]
        _write_csv(out / folder / "labels.csv", ["file", *names], rows)
    _write_csv(
        out / "truth.csv",
        ["file", "phases", "lattice_scales", "aniso", "spots_per_ring", "spot_pixels"],
        truth,
    )
    if plot:
        plot_frames(out)
    return out


def plot_frames(out_dir: str | Path, k: int = 4) -> Path:
    """``frames.png`` in ``out_dir``: the first ``k`` frames (log scale, true mask outlined) and
    their unmasked and masked integrations."""
    import fabio
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    with open(out / "labels.csv", newline="") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1 : k + 1]
    fig, axes = plt.subplots(2, len(rows), figsize=(4.2 * len(rows), 8), squeeze=False)
    for j, row in enumerate(rows):
        name = Path(row[0]).stem
        with fabio.open(str(out / row[0])) as img:
            frame = img.data
        with fabio.open(str(out / "masks" / f"{name}.edf")) as img:
            mask = img.data
        ax = axes[0, j]
        ax.imshow(np.log10(np.clip(frame, 1, None)), cmap="magma")
        ax.contour(mask, levels=[0.5], colors="cyan", linewidths=0.6)
        present = [p for p, v in zip(header[1:], row[1:], strict=True) if v == "1"]
        ax.set_title(f"{name}: {', '.join(present) or 'no target'}", fontsize=9)
        ax.axis("off")
        for kind, color in (("unmasked", "0.5"), ("masked", "C0")):
            x, y = np.loadtxt(out / kind / f"{name}.dat", unpack=True)
            axes[1, j].plot(x, y, color=color, lw=0.8, label=kind)
        axes[1, j].set_yscale("log")
        axes[1, j].set_xlabel("2θ (°)")
        axes[1, j].legend(fontsize=8)
    fig.tight_layout()
    path = out / "frames.png"
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=90, format="png")
    finally:
        plt.close(fig)
    return path


def _poni_text(ai: Any) -> str:
    """The ``.poni`` text of ``ai`` without pyFAI's time stamp (so that outputs are reproducible)."""
    from pyFAI.io.ponifile import PoniFile

    buf = io.StringIO()
    PoniFile(ai).write(buf)
    return "".join(
        line
        for line in buf.getvalue().splitlines(keepends=True)
        if not line.startswith("# Calibration done")
    )


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def _write_edf(path: Path, data: np.ndarray, fabio: Any) -> None:
    with atomic_path(path) as tmp:
        fabio.edfimage.EdfImage(data=data).write(str(tmp))
