"""Temperature scaling and calibration error."""

from __future__ import annotations

import numpy as np

from xrdmtl.model.calibration import expected_calibration_error, fit_temperature


def test_overconfident_margins_get_a_temperature_above_one() -> None:
    rng = np.random.default_rng(0)
    true = rng.normal(0, 2, (4000, 1))
    labels = (rng.random((4000, 1)) < 1 / (1 + np.exp(-true))).astype(np.uint8)
    t = fit_temperature(3 * true, labels)
    assert t.shape == (1,) and 2.5 < t[0] < 3.5
    probs = 1 / (1 + np.exp(-(3 * true) / t))
    assert expected_calibration_error(probs, labels) < expected_calibration_error(
        1 / (1 + np.exp(-3 * true)), labels
    )
