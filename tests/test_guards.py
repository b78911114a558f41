"""The API checks its own settings (issue 30): a bad value is a ConfigError (a ValueError and an
XrdmtlError) at construction, and the CLI shows the same check as one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from clitools import WAVELENGTH, error_lines, invoke

from xrdmtl.errors import ConfigError, FrameError, XrdmtlError
from xrdmtl.inference.predictor import Predictor
from xrdmtl.io.read import ReadOptions
from xrdmtl.synthesis.patterns import SynthConfig
from xrdmtl.training.adapt import AdaptConfig
from xrdmtl.training.finetune import FinetuneConfig
from xrdmtl.training.train import TrainConfig
from xrdmtl.workflows.adapt import NetworkTuning

BAD = [
    (lambda: ReadOptions(wavelength=-1), "wavelength must be positive"),
    (lambda: ReadOptions(wavelength=float("nan")), "wavelength must be positive"),
    (lambda: ReadOptions(x_unit="furlongs"), "unknown x unit"),
    (lambda: TrainConfig(arch="nonsense"), "arch must be one of mtl"),
    (lambda: TrainConfig(loss="hinge"), "loss must be one of"),
    (lambda: TrainConfig(steps=0), "steps"),
    (lambda: TrainConfig(device="abacus"), "device must be auto"),
    (lambda: TrainConfig(synth={"p_lab": 1.5}), "p_lab is a probability"),
    (lambda: TrainConfig(synth={"snr_typo": 3}), "unknown synthesis settings: snr_typo"),
    (lambda: FinetuneConfig(train_layers="middle"), "train_layers must be one of"),
    (lambda: FinetuneConfig(real_fraction=1.5), "real_fraction"),
    (lambda: SynthConfig(crystals=(20.0, 3.0)), "crystals is a range"),
    (lambda: SynthConfig(lattice_coverage=(1.01, 1.03)), "lattice_coverage needs"),
    (lambda: AdaptConfig(contradicted="ignore"), "contradicted must be one of auto"),
    (lambda: NetworkTuning(layers="top"), "layers must be heads or all"),
    (lambda: Predictor(threshold=1.5), "threshold must lie between 0 and 1"),
    (lambda: Predictor(threshold=0.0), "threshold must lie between 0 and 1"),
]


@pytest.mark.parametrize("make, words", BAD, ids=[w for _, w in BAD])
def test_bad_settings_raise_at_construction(make, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as info:
        make()
    assert isinstance(info.value, ValueError) and isinstance(info.value, XrdmtlError)


def test_good_settings_construct(tmp_path: Path) -> None:
    poni = tmp_path / "g.poni"
    poni.write_text("")
    assert ReadOptions(wavelength=0.561, x_unit="q", poni=poni, mask="auto").poni == str(poni)
    assert TrainConfig(arch="binary", loss="focal", device="cpu").arch == "binary"
    assert FinetuneConfig(train_layers="top").train_layers == "top"
    with pytest.raises(FrameError, match="no such geometry file"):
        ReadOptions(poni=tmp_path / "missing.poni")


@pytest.mark.parametrize(
    "args, words",
    [
        (["predict", "x.xy", "--threshold", "1.5"], "threshold must lie between 0 and 1"),
        (["predict", "x.xy", "--wavelength", "-1"], "wavelength must be positive"),
        (["train", "--out", "m", "--arch", "nonsense"], "arch must be one of"),
        (["train", "--out", "m", "--loss", "hinge"], "loss must be one of"),
        (["finetune", "--labels", "l.csv", "--out", "m", "--layers", "top"], "layers must be"),
        (["finetune", "--labels", "l.csv", "--out", "m", "--contradicted", "x"], "contradicted"),
    ],
)
def test_the_cli_shows_the_api_check_as_one_line(tmp_path: Path, args, words: str) -> None:
    (tmp_path / "l.csv").write_text("file,calcite\n")
    args = [str(tmp_path / a) if a in ("x.xy", "m", "l.csv") else a for a in args]
    res = invoke(*args, *(["--wavelength", WAVELENGTH] if "--wavelength" not in args else []))
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    (line,) = error_lines(res)
    assert words in line, line
