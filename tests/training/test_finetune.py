"""Fine-tuning on measured patterns: lattice fit, adapted synthesis, cross-validation, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from toymodels import PHASES, toy_model

from xrdmtl.io.labels import LabeledPatterns
from xrdmtl.io.read import ReadOptions
from xrdmtl.model.files import load_model
from xrdmtl.physics.grid import QGrid
from xrdmtl.physics.phases import LIBRARY, get_phase
from xrdmtl.synthesis.patterns import SynthConfig, Synthesizer
from xrdmtl.training.finetune import adapt_synthesizer, finetune, fit_lattice_scales
from xrdmtl.training.train import augment

GRID = QGrid()


def _hdac_labels(test_data: Path, tmp_path: Path) -> Path:
    """A labels CSV over the three measured patterns shipped in tests/data/hdac."""
    rows = ["file,bastnaesite,calcite,rhenium"]
    rows += [f"{test_data / 'hdac' / f},{lab}" for f, lab in (
        ("unmasked/xy_bc_10.npy", "1,1,0"), ("masked/xy_bc_10.npy", "1,1,0"), ("masked/xy_r_98.npy", "0,0,1"),
    )]  # fmt: skip
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv


def test_lattice_fit_recovers_a_known_scale() -> None:
    """Synthetic patterns with bastnaesite's lattice 1.5 % smaller than its cell (no zero error or
    axial strain to blur it): the fit finds it."""
    targets = [get_phase(p) for p in PHASES]
    config = SynthConfig(
        p_unmasked=0.0,
        zero_offset_deg=0.0,
        anisotropic_strain=0.0,
        p_texture=0.0,
        crystals=(1000.0, 5000.0),
        p_random_peaks=0.0,
    )
    shifted = Synthesizer(targets, GRID, config=config)
    shifted, _ = adapt_synthesizer(shifted, {"bastnaesite": {"scale": 0.985}}, halfwidth=1e-4)
    batch = shifted.sample(32, np.random.default_rng(3))
    assert batch.labels[:, 0].sum() >= 4
    fit = fit_lattice_scales(
        LabeledPatterns(batch.intensity, batch.coverage, batch.labels), targets, GRID
    )
    assert abs(fit["bastnaesite"]["scale"] - 0.985) < 0.001
    assert fit["bastnaesite"]["n_patterns"] >= 2
    for i, name in enumerate(PHASES):  # the others: inside the range the synthesis drew them from
        if name in fit and name != "bastnaesite":
            lo, hi = shifted.lattice_ranges[i]
            assert lo - 0.001 <= fit[name]["scale"] <= hi + 0.001


def test_adapted_synthesis_draws_around_the_fit() -> None:
    synth = Synthesizer([get_phase(p) for p in PHASES], GRID)
    adapted, ranges = adapt_synthesizer(synth, {"bastnaesite": {"scale": 0.98}}, halfwidth=0.004)
    assert ranges == {"bastnaesite": [0.976, 0.984]}
    batch = adapted.sample(64, np.random.default_rng(0))
    assert (batch.lattice_scale[:, 0] >= 0.976 - 1e-6).all() and (
        batch.lattice_scale[:, 0] <= 0.984 + 1e-6
    ).all()
    assert (
        get_phase("bastnaesite").priors == LIBRARY["bastnaesite"].priors
    )  # the library phase is untouched


def test_augment_strength_zero_keeps_patterns() -> None:
    rng = np.random.default_rng(0)
    y = (100 + rng.normal(0, 1, (3, GRID.n))).astype(np.float32)
    cov = np.ones_like(y, bool)
    out, c = augment(y, cov, np.random.default_rng(1), strength=0.0, q_step=GRID.step)
    np.testing.assert_allclose(out[c], y[c], rtol=1e-5)
    out, c = augment(y, cov, np.random.default_rng(1), q_step=GRID.step)
    assert out.shape == y.shape and np.isfinite(out).all() and c[:, 10:-10].all()


def test_finetune_on_measured_patterns_at_toy_size(tmp_path, test_data) -> None:
    base = toy_model(tmp_path / "base")
    csv = _hdac_labels(test_data, tmp_path)
    result = finetune(
        base, csv, tmp_path / "ft", steps=3, batch_size=8, options=ReadOptions(wavelength=0.561), workers=0, threads=1,
        progress=False, adapt_lattice=True,
    )  # fmt: skip
    model = load_model(tmp_path / "ft", device="cpu")
    info = model.meta["training"]["finetune"]
    assert info["n_labeled"] == 3 and len(result.history) == 3
    assert info["lattice_adaptation"]["halfwidth"] == 0.004
    # calcite is labeled present in two patterns and its peaks are clear: its fitted scale is recorded
    fit = model.meta["lattice_scales"]["calcite"]
    assert fit["n_patterns"] == 2 and abs(fit["scale"] - 1.0) < 0.005
    lo, hi = info["lattice_adaptation"]["ranges"][
        "calcite"
    ]  # around the fit, inside calcite's range
    assert (
        lo >= get_phase("calcite").priors.lattice_range[0]
        and lo <= fit["scale"] <= hi
        and hi - lo <= 0.008 + 1e-6
    )


@pytest.mark.parametrize("layers", ["heads", "all"])
def test_finetune_keeps_the_batchnorm_statistics(tmp_path, test_data, layers) -> None:
    """A few measured patterns drawn over and over must not move the trunk's normalisation."""
    base = toy_model(tmp_path / "base")
    finetune(base, _hdac_labels(test_data, tmp_path), tmp_path / "ft", steps=5, batch_size=8, options=ReadOptions(wavelength=0.561),
             workers=0, threads=1, progress=False, train_layers=layers)  # fmt: skip
    before = load_model(base, device="cpu", fuse=False).net.state_dict()
    after = load_model(tmp_path / "ft", device="cpu", fuse=False).net.state_dict()
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert stats
    for k in stats:
        assert np.array_equal(before[k].numpy(), after[k].numpy()), k
    heads = [k for k in before if not k.startswith("trunk.") and before[k].dtype.is_floating_point]
    assert any(not np.array_equal(before[k].numpy(), after[k].numpy()) for k in heads)


def test_finetune_excludes_patterns_by_name(tmp_path, test_data) -> None:
    base = toy_model(tmp_path / "base")
    csv = _hdac_labels(test_data, tmp_path)
    drop = str(test_data / "hdac" / "masked/xy_r_98.npy")
    finetune(
        base, csv, tmp_path / "ft", steps=2, batch_size=8, options=ReadOptions(wavelength=0.561), workers=0, threads=1,
        progress=False, exclude={drop},
    )  # fmt: skip
    meta = load_model(tmp_path / "ft").meta
    assert meta["training"]["finetune"]["n_excluded"] == 1
    # by default the lattice is fitted and recorded, the synthesis left as it is
    assert "calcite" in meta["lattice_scales"]
    assert meta["training"]["finetune"]["lattice_adaptation"]["adapted"] is False


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])


def test_exclude_on_arrays_is_a_bool_per_pattern_never_ignored(tmp_path) -> None:
    """Patterns given as arrays carry no file names: names in ``exclude`` are an error (they once
    excluded nothing), a bool per pattern leaves those patterns out."""
    from xrdmtl.errors import LabelsError

    base = toy_model(tmp_path / "base")
    batch = Synthesizer([get_phase(p) for p in PHASES], GRID).sample(4, np.random.default_rng(0))
    data = LabeledPatterns(batch.intensity, batch.coverage, batch.labels)
    kw = dict(steps=1, batch_size=4, workers=0, threads=1, progress=False)
    with pytest.raises(LabelsError, match="bool per pattern"):
        finetune(base, data, tmp_path / "a", exclude=["a.npy"], **kw)
    with pytest.raises(LabelsError, match="bool per labeled pattern"):
        finetune(base, data, tmp_path / "b", exclude=[True, False], **kw)
    finetune(base, data, tmp_path / "c", exclude=[True, False, True, False], **kw)
    assert load_model(tmp_path / "c").meta["training"]["finetune"]["n_excluded"] == 2


def test_exclude_names_a_labeled_file(tmp_path, test_data) -> None:
    from xrdmtl.errors import LabelsError

    csv = _hdac_labels(test_data, tmp_path)
    with pytest.raises(LabelsError, match="names no labeled file: nope.npy"):
        finetune(toy_model(tmp_path / "base"), csv, tmp_path / "ft", steps=1, batch_size=4,
                 options=ReadOptions(wavelength=0.561), workers=0, threads=1, progress=False,
                 exclude=["nope.npy"])  # fmt: skip
