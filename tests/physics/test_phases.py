"""Phase library, reflections, JCPDS phases, structure-factor cache and the ``phases`` command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import find_peaks
from typer.testing import CliRunner

from xrdmtl.cli.app import app
from xrdmtl.errors import PhaseError
from xrdmtl.physics import phases as ph
from xrdmtl.physics.phases import (
    DISTRACTORS,
    TARGETS,
    Phase,
    get_phase,
    library,
    load_phase,
    write_jcpds,
)

DATA = Path(__file__).parents[1] / "data"
CU = 1.5418


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("XRDMTL_CACHE_DIR", str(folder))
    return folder


def _nearest(computed: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Distance from each measured position to the nearest computed one."""
    return np.abs(measured[:, None] - computed[None, :]).min(axis=1)


def test_library_names_and_roles() -> None:
    lib = library()
    assert TARGETS == ("bastnaesite", "calcite", "rhenium")
    assert set(TARGETS) <= set(lib) and set(DISTRACTORS) <= set(lib)
    assert len(DISTRACTORS) >= 6 and not set(DISTRACTORS) & set(TARGETS)
    assert {"diamond", "fluorite", "quartz", "aragonite", "dolomite", "halite", "siderite"} <= set(
        lib
    )
    expected = {
        "bastnaesite": ("LaCO3F", "P-62c"),
        "calcite": ("CaCO3", "R-3c"),
        "rhenium": ("Re", "P6_3/mmc"),
        "quartz": ("SiO2", "P3_221"),
        "aragonite": ("CaCO3", "Pnma"),
        "dolomite": ("CaMg(CO3)2", "R-3"),
    }
    for name, (formula, sg) in expected.items():
        assert lib[name].formula == formula and lib[name].space_group.startswith(sg)
    for name in TARGETS:
        lo, hi = lib[name].priors.lattice_range
        assert lo < 1 < hi


def test_get_phase_case_and_errors() -> None:
    assert get_phase("Calcite") is get_phase("CALCITE")
    assert get_phase("CeO2").name == "ceria"
    with pytest.raises(PhaseError, match="known: bastnaesite, calcite, rhenium"):
        get_phase("unobtainium")


def test_bragg_consistency() -> None:
    for lam in (CU, 0.561):
        r = get_phase("rhenium").reflections(lam)
        theta = np.deg2rad(r.two_theta) / 2
        np.testing.assert_allclose(2 * r.d * np.sin(theta), lam, rtol=1e-9)
        np.testing.assert_allclose(r.q, 2 * np.pi / r.d, rtol=1e-12)
        np.testing.assert_allclose(r.q, 4 * np.pi * np.sin(theta) / lam, rtol=1e-9)
        assert np.all(np.diff(r.q) > 0) and r.intensity.max() == pytest.approx(100)


def test_hexagonal_d_from_three_index_hkl() -> None:
    a, _, c = get_phase("rhenium").cell[:3]
    r = get_phase("rhenium").reflections()
    h, k, l_ = np.array(r.hkl).T
    d = 1 / np.sqrt(4 / 3 * (h**2 + h * k + k**2) / a**2 + l_**2 / c**2)
    np.testing.assert_allclose(r.d, d, rtol=1e-6)


def test_calcite_matches_rruff_measured_peaks() -> None:
    tth, inten = np.loadtxt(
        DATA / "rruff_calcite_R040070.txt", comments="#", delimiter=",", unpack=True
    )
    step = np.median(np.diff(tth))  # one peak per reflection: Kα2 shoulders are < 0.5° away
    peaks, props = find_peaks(inten, prominence=0.02 * inten.max(), distance=int(0.5 / step))
    top = tth[peaks[np.argsort(props["prominences"])[::-1][:5]]]
    refl = get_phase("calcite").reflections(CU, min_intensity=2.0)
    assert _nearest(refl.two_theta, top).max() < 0.15
    assert abs(tth[peaks[np.argmax(inten[peaks])]] - refl.strongest(1).two_theta[0]) < 0.15


def test_bastnaesite_ce_matches_rruff_dif_peaks() -> None:
    rows = re.findall(
        r"^\s+(\d+\.\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)\s+-?\d+\s+-?\d+\s+-?\d+\s*$",
        (DATA / "rruff_bastnaesite_R060550_DIF.txt").read_text(),
        flags=re.M,
    )
    dif = np.array(rows, dtype=float)
    top = dif[np.argsort(dif[:, 1])[::-1][:5], 0]
    refl = get_phase("bastnaesite-ce").reflections(1.541838, min_intensity=5.0)
    assert _nearest(refl.two_theta, top).max() < 0.15
    strongest = refl.take(np.flatnonzero(refl.two_theta < 90)).strongest(1)
    assert strongest.two_theta[0] == pytest.approx(dif[np.argmax(dif[:, 1]), 0], abs=0.15)


def test_la_bastnaesite_cell_sits_on_measured_hdac_peaks() -> None:
    path = DATA / "hdac" / "masked" / "xy_bc_10.npy"
    if not path.exists():
        pytest.skip("hdac test pattern not present")
    tth, inten = np.load(path, allow_pickle=False)
    peaks, props = find_peaks(inten, prominence=0.05 * inten.max())
    found = tth[peaks]
    refl = get_phase("bastnaesite").reflections(0.561)
    strong = refl.take(np.flatnonzero((refl.two_theta > 5) & (refl.two_theta < 24))).strongest(4)
    assert _nearest(found, strong.two_theta).max() < 0.05  # the shipped (measured) cell
    ce = get_phase("bastnaesite-ce").reflections(0.561)
    ce_strong = ce.take(np.flatnonzero((ce.two_theta > 5) & (ce.two_theta < 24))).strongest(4)
    assert (
        _nearest(found, ce_strong.two_theta).max() > 0.15
    )  # the bastnaesite-(Ce) cell misses them


def test_lattice_scaled_moves_d_only() -> None:
    calcite = get_phase("calcite")
    r0, r1 = calcite.reflections(CU), calcite.lattice_scaled(1.01).reflections(CU)
    np.testing.assert_allclose(r1.d, r0.d * 1.01, rtol=1e-9)
    np.testing.assert_allclose(r1.intensity, r0.intensity, atol=3.0)  # LP and B shift slightly
    aniso = get_phase("bastnaesite").lattice_scaled((1.0, 1.0, 1.02)).reflections()
    base = get_phase("bastnaesite").reflections()
    i002 = base.hkl.index((0, 0, 2))
    assert aniso.d[aniso.hkl.index((0, 0, 2))] == pytest.approx(base.d[i002] * 1.02)


def test_jcpds_round_trip(tmp_path: Path) -> None:
    rhenium = get_phase("rhenium")
    path = tmp_path / "re.jcpds"
    write_jcpds(rhenium, path, wavelength=0.561)
    assert path.read_text().startswith("VERSION: 4")
    jc = Phase.from_jcpds(path)
    assert jc.structure is None and jc.space_group == "hexagonal"
    np.testing.assert_allclose(jc.cell, rhenium.cell, rtol=1e-5)
    r_jc, r_cif = jc.reflections(0.561), rhenium.reflections(0.561)
    common = [r_cif.hkl.index(h) for h in r_jc.hkl]
    np.testing.assert_allclose(r_jc.d, r_cif.d[common], rtol=1e-5)
    np.testing.assert_allclose(r_jc.two_theta, r_cif.two_theta[common], rtol=1e-5)
    np.testing.assert_allclose(
        r_jc.intensity, r_cif.intensity[common] * 100 / r_cif.intensity[common].max(), atol=0.02
    )
    np.testing.assert_allclose(jc.lattice_scaled(1.02).reflections().d, r_jc.d * 1.02, rtol=1e-9)
    assert load_phase(path).name == "re"


def test_jcpds_hand_written(tmp_path: Path) -> None:
    path = tmp_path / "mgo.jcpds"
    path.write_text(
        "VERSION: 4\nCOMMENT: periclase\nK0: 160.0\nSYMMETRY: CUBIC\nA: 4.2112\n"
        "DIHKL: 2.4314 10.0 1 1 1\nDIHKL: 2.1056 100.0 2 0 0\nDIHKL: 1.4889 52.0 2 2 0\n"
    )
    phase = Phase.from_jcpds(path, name="periclase")
    r = phase.reflections(CU)
    assert r.hkl == ((1, 1, 1), (2, 0, 0), (2, 2, 0))
    np.testing.assert_allclose(r.intensity, [10, 100, 52])  # listed intensities, no LP
    np.testing.assert_allclose(r.two_theta, 2 * np.degrees(np.arcsin(CU / (2 * r.d))))
    np.testing.assert_allclose(phase.lattice_scaled(0.99).reflections().d, r.d * 0.99, rtol=1e-9)


@pytest.mark.parametrize(
    "text, message",
    [
        ("COMMENT: x\nSYMMETRY: CUBIC\nA: 4\nDIHKL: 2 100 1 1 1\n", "VERSION: 4"),
        ("VERSION: 4\nSYMMETRY: WOBBLY\nA: 4\nDIHKL: 2 100 1 1 1\n", "SYMMETRY"),
        ("VERSION: 4\nSYMMETRY: HEXAGONAL\nA: 3\nDIHKL: 2 100 1 0 0\n", "needs C"),
        ("VERSION: 4\nSYMMETRY: CUBIC\nA: four\nDIHKL: 2 100 1 1 1\n", "non-numeric"),
        ("VERSION: 4\nSYMMETRY: CUBIC\nA: 4\n", "no DIHKL"),
        ("VERSION: 4\nSYMMETRY: CUBIC\nA: 4\nDIHKL: 2 100 1\n", "d, intensity, h, k, l"),
        ("VERSION: 4\nSYMMETRY: CUBIC\nA: 4\nDIHKL: -2 100 1 1 1\n", "d must be > 0"),
        ("\x00\x01 binary junk", "KEY: value"),
    ],
)
def test_bad_jcpds(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.jcpds"
    path.write_text(text)
    with pytest.raises(PhaseError, match=re.escape(message)) as err:
        Phase.from_jcpds(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("text", ["", "not a cif at all\n", "data_x\n_cell_length_a 3\n"])
def test_bad_cif(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.cif"
    path.write_text(text)
    with pytest.raises(PhaseError) as err:
        Phase.from_cif(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_load_phase(tmp_path: Path) -> None:
    assert load_phase("Rhenium") is get_phase("rhenium")
    cif = ph.builtin_cif_dir() / "halite_NaCl.cif"
    assert load_phase(cif).formula == "NaCl"
    with pytest.raises(PhaseError, match="no such file"):
        load_phase(tmp_path / "missing.cif")
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(PhaseError, match="unknown phase file type"):
        load_phase(other)


def test_structure_factor_cache(_cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache by what it does (timing belongs in ``make bench``): the first call computes and
    stores the table; a new process (memory cache empty) reads it from disk without computing."""
    cif = ph.builtin_cif_dir() / "aragonite_CaCO3.cif"
    ph._MEMORY_CACHE.clear()
    computed: list[object] = []
    compute = ph._structure_table
    monkeypatch.setattr(ph, "_structure_table", lambda s: computed.append(s) or compute(s))
    first = Phase.from_cif(cif).reflections(CU)
    assert len(computed) == 1
    files = list(_cache_dir.glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["lp"] is True

    ph._MEMORY_CACHE.clear()  # as in a new process: only the disk cache is left
    second = Phase.from_cif(cif).reflections(CU)
    assert len(computed) == 1  # read from disk, not computed again
    assert second.hkl == first.hkl
    np.testing.assert_array_equal(second.d, first.d)
    np.testing.assert_array_equal(second.intensity, first.intensity)
    Phase.from_cif(cif).reflections(CU)  # and from memory within a process
    assert len(computed) == 1

    files[0].write_text("{broken")  # a broken cache file is ignored and rewritten
    ph._MEMORY_CACHE.clear()
    third = Phase.from_cif(cif).reflections(CU)
    np.testing.assert_allclose(third.intensity, first.intensity)
    assert len(computed) == 2  # recomputed
    assert json.loads(files[0].read_text())["hkl"]


def test_cli_library_table() -> None:
    result = CliRunner().invoke(app, ["phases"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in (*TARGETS, *DISTRACTORS, "diamond"):
        assert name in result.output
    assert "P-62c" in result.output and "7.3030" in result.output


def test_cli_reflections_and_user_phases(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["phases", "bastnaesite", "--wavelength", "1.5406", "--max", "5"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "2θ" in result.output and "002" in result.output
    assert "2 -1" not in result.output  # a trigonal index with its overbar, 21̅4
    assert "21\u03054" in result.output
    jc = tmp_path / "myre.jcpds"
    write_jcpds(get_phase("rhenium"), jc)
    cif = ph.builtin_cif_dir() / "zincite_ZnO.cif"
    result = runner.invoke(
        app, ["phases", "--jcpds", str(jc), "--cif", str(cif)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0 and "myre" in result.output and "zincite_ZnO" in result.output
    result = runner.invoke(app, ["phases", "myre", "--jcpds", str(jc)], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "hexagonal" in result.output
    result = runner.invoke(app, ["phases", "nonsense"])
    assert result.exit_code == 2 and "unknown phase" in result.output


def test_reflection_list_phases_of_the_library() -> None:
    gypsum = get_phase("gypsum")
    assert gypsum.structure is None and gypsum.cell[4] == pytest.approx(118.43)
    r = gypsum.reflections(1.5406)
    assert np.any(np.abs(r.d - 3.0645) < 1e-3)  # 1 % from calcite's 104: why gypsum is a distractor
    assert np.all(
        np.abs(gypsum.lattice_scaled(1.01).reflections(None).d / gypsum.reflections(None).d - 1.01)
        < 1e-9
    )
    assert get_phase("CaSO4").name == "anhydrite"


@pytest.mark.parametrize(
    ("name", "d_strongest"),
    [  # the strongest line of each mineral's well-known powder pattern (Å)
        ("zircon", 3.30),
        ("forsterite", 2.46),
        ("diopside", 2.99),
        ("grossular", 2.65),
        ("sanidine", 3.23),  # 002 (with 040 at 3.26 Å, the measured strongest blend)
        ("larnite", 2.79),
        ("fluorapatite", 2.80),
        ("monazite-la", 3.12),
        ("fluocerite-la", 3.23),
        ("albite", 3.19),
        ("anorthite", 3.20),
        ("enstatite", 3.17),
        ("muscovite", 2.56),  # of a random powder (oriented mounts: 9.95 Å, 001 lines)
        ("ilmenite", 2.75),
        ("fayalite", 2.50),
        ("titanite", 3.23),
    ],
)
def test_many_line_minerals_match_their_powder_patterns(name: str, d_strongest: float) -> None:
    """The silicate, phosphate, fluoride and oxide minerals put a computed line within 1 % of the
    strongest line of the measured pattern, among their three strongest, with no short bond."""
    phase = get_phase(name)
    refl = phase.reflections(CU)
    top = refl.take(np.flatnonzero(refl.two_theta < 90)).strongest(3)
    assert np.min(np.abs(top.d / d_strongest - 1)) < 0.01
    # each one is a training distractor, or kept out of training for the unseen-mineral benchmark
    assert (name in ph.EXTRA_DISTRACTORS) != (name in ph.UNSEEN_MINERALS)
    structure = phase.structure
    assert structure is not None
    dist = structure.distance_matrix + 99 * np.eye(len(structure))
    assert (
        dist.min() > 1.2
    )  # a wrong symmetry setting stacks atoms (monazite's first draft: 1.06 Å)


def test_every_shipped_structure_file_has_its_provenance() -> None:
    """Each CIF / JCPDS file of the package is named in data/cif/PROVENANCE.md (source, licence)."""
    folder = ph.builtin_cif_dir()
    text = (folder / "PROVENANCE.md").read_text(encoding="utf-8")
    files = sorted(p.name for p in folder.iterdir() if p.suffix in (".cif", ".jcpds"))
    assert [f for f in files if f not in text] == []
    assert {entry.file for entry in ph.LIBRARY.values()} == set(files)


def test_library_roles_keep_the_unseen_minerals_out_of_training() -> None:
    roles = {name: ph.library_role(name) for name in ph.LIBRARY}
    assert [n for n, r in roles.items() if r == "target"] == list(ph.TARGETS)
    assert roles["quartz"] == "distractor, frames" and roles["albite"] == "distractor"
    assert {n for n, r in roles.items() if r == "unseen"} == set(ph.UNSEEN_MINERALS)
    from xrdmtl.synthesis.patterns import default_distractors

    drawn = {p.name for p in default_distractors([get_phase(t) for t in ph.TARGETS])}
    assert drawn.isdisjoint(ph.UNSEEN_MINERALS) and set(ph.ROCK_DISTRACTORS) <= drawn


def _cubic_cif(path: Path, a: float) -> Path:
    path.write_text(
        "data_x\n"
        + "".join(f"_cell_length_{k} {a}\n" for k in "abc")
        + "".join(f"_cell_angle_{k} 90\n" for k in ("alpha", "beta", "gamma"))
        + "_symmetry_space_group_name_H-M 'P 1'\nloop_\n_atom_site_label\n_atom_site_type_symbol\n"
        "_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\nSi1 Si 0 0 0\n"
    )
    return path


def test_a_cell_too_large_to_tabulate_is_one_line_and_a_large_one_a_note(tmp_path: Path) -> None:
    """A 500 Å cell has ~10⁹ reflections below Q = 8 Å⁻¹ (pymatgen: days): refused at once; a
    20 Å cell (~70,000, about 10 s) is computed, after a note saying so."""
    from xrdmtl.physics.phases import Phase, slow_table_note

    with pytest.raises(PhaseError, match="500.0 × 500.0 × 500.0 Å.*supercell") as err:
        Phase.from_cif(_cubic_cif(tmp_path / "huge.cif", 500))
    assert "\n" not in str(err.value)
    note = slow_table_note(Phase.from_cif(_cubic_cif(tmp_path / "big.cif", 20)))
    assert note is not None and "big: a large cell" in note and "s, once" in note
    assert slow_table_note(Phase.from_cif(_cubic_cif(tmp_path / "small.cif", 5))) is None
