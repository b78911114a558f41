"""Model input channels: shapes, ranges, background removal and coverage handling."""

import numpy as np

from xrdmtl.model.preprocess import N_CHANNELS, model_input, noise_sigma
from xrdmtl.physics.background import fill_uncovered
from xrdmtl.physics.grid import QGrid


def _peaky(grid: QGrid, background: np.ndarray) -> np.ndarray:
    q = grid.values
    peaks = 50 * np.exp(-0.5 * ((q - 2.0) / 0.005) ** 2) + 30 * np.exp(
        -0.5 * ((q - 3.1) / 0.006) ** 2
    )
    return (background + peaks).astype(np.float32)


def test_channels_shape_and_range():
    grid = QGrid(1.0, 4.0, 1024)
    x = _peaky(grid, 1000 + 200 * np.sin(grid.values))
    cov = np.ones(grid.n, bool)
    m = model_input(x, cov, grid.step)
    assert m.shape == (1, N_CHANNELS, grid.n) and m.dtype == np.float32
    assert np.isclose(m[0, 0].min(), 0) and np.isclose(m[0, 0].max(), 1)
    assert m[0, 1].max() <= 1 and m[0, 1].min() >= -1
    assert (m[0, 2] == 1).all()
    assert m[0, 3].max() <= 1 and m[0, 3].min() >= -1


def test_background_removal_makes_background_irrelevant():
    """The detrended channel of a peak set on a large smooth background matches the bare peaks."""
    grid = QGrid(1.0, 4.0, 1024)
    cov = np.ones(grid.n, bool)
    flat = model_input(_peaky(grid, np.zeros(grid.n)), cov, grid.step)[0, 1]
    humped = model_input(
        _peaky(grid, 2000 + 800 * np.exp(-(((grid.values - 2.3) / 0.6) ** 2))), cov, grid.step
    )[0, 1]
    peak_idx = np.argmax(flat)
    assert np.argmax(humped) == peak_idx
    assert np.abs(flat - humped).max() < 0.05


def test_uncovered_points_are_zero_and_ignored():
    grid = QGrid(1.0, 4.0, 512)
    x = _peaky(grid, np.full(grid.n, 100.0))
    cov = grid.values < 2.5
    x[~cov] = 1e6  # garbage where there is no data must not leak into the normalisation
    m = model_input(x, cov, grid.step)[0]
    assert (m[:, ~cov][:2] == 0).all()
    assert np.isclose(m[0, cov].max(), 1)


def test_fill_uncovered_takes_nearest_covered_value():
    x = np.array([[0, 5, 0, 0, 7, 0]], dtype=np.float32)
    cov = np.array([[False, True, False, False, True, False]])
    assert fill_uncovered(x, cov).tolist() == [[5, 5, 5, 5, 7, 7]]


def test_noise_sigma_matches_per_row_median_whatever_the_coverage():
    rng = np.random.default_rng(3)
    x = rng.normal(0, 2.0, (4, 600)).astype(np.float32)
    cov = np.ones_like(x, bool)
    cov[1, :250] = False
    cov[2, 300:] = False
    cov[3] = False
    sigma = noise_sigma(x, cov)[:, 0]
    for i in range(3):
        valid = cov[i, 1:] & cov[i, :-1]
        ref = np.median(np.abs(np.diff(x[i]))[valid]) / (0.6745 * np.sqrt(2))
        assert np.isclose(sigma[i], ref, rtol=1e-5)
    assert 1.7 < sigma[0] < 2.3  # the σ of the noise drawn
    assert sigma[3] == 0


def test_log_contrast_keeps_a_weak_phase_beside_a_strong_one_and_the_background_scale():
    """Channel 1 scales by the strongest peak; channel 3 does not, so a 3 % peak next to one 30×
    the background stays visible, and the same peak on a 10× higher background reads weaker."""
    grid = QGrid(1.0, 4.0, 1024)
    q = grid.values
    cov = np.ones(grid.n, bool)
    bg = np.full(grid.n, 1000.0)
    weak = 30 * np.exp(-0.5 * ((q - 2.0) / 0.006) ** 2)
    strong = 30000 * np.exp(-0.5 * ((q - 3.0) / 0.006) ** 2)
    x = np.stack([bg + weak + strong, bg + weak, 10 * bg + weak]).astype(np.float32)
    m = model_input(x, np.broadcast_to(cov, x.shape), grid.step)
    i = np.argmin(np.abs(q - 2.0))
    assert m[0, 1, i] < 0.002  # lost in the peak-scaled channel
    assert m[0, 3, i] > 0.15  # kept on the log scale
    assert np.isclose(m[0, 3, i], m[1, 3, i], rtol=0.05)  # independent of the strong peak
    assert m[2, 3, i] < 0.6 * m[1, 3, i]  # relative to the background it stands on


def test_noise_sigma_at_a_lag_sees_correlated_noise():
    """Noise smoothed over a few points looks quiet to neighbour differences; differences
    ``lag`` apart see its full σ, and for white noise every lag agrees."""
    rng = np.random.default_rng(4)
    white = rng.normal(0, 1.0, (1, 20000)).astype(np.float32)
    smooth = np.convolve(white[0], np.ones(5) / np.sqrt(5), mode="same")[None].astype(np.float32)
    cov = np.ones_like(white, bool)
    assert np.isclose(noise_sigma(white, cov, 8)[0, 0], noise_sigma(white, cov)[0, 0], rtol=0.05)
    assert np.isclose(noise_sigma(smooth, cov, 8)[0, 0], 1.0, rtol=0.05)
    assert noise_sigma(smooth, cov)[0, 0] < 0.5


def test_contrast_shows_a_weak_ring_on_a_high_count_background():
    """A ring 1.5 % over a background of 10⁶ counts (Poisson σ 0.1 %) stands 15σ high: the contrast
    channel must show it clearly (a unit of 1 % of the background once made it 0.12), and the
    correlated noise around it must stay well under it."""
    grid = QGrid(1.0, 4.0, 1024)
    rng = np.random.default_rng(5)
    bg = np.full(grid.n, 1e6)
    noise = np.convolve(rng.normal(0, 1e3, grid.n), np.ones(4) / 2, mode="same")
    peak = 1.5e4 * np.exp(-0.5 * ((grid.values - 2.5) / 0.004) ** 2)
    cov = np.ones(grid.n, bool)
    contrast = model_input((bg + noise + peak).astype(np.float32), cov, grid.step)[0, 3]
    at_peak = contrast[np.argmin(np.abs(grid.values - 2.5))]
    away = np.abs(contrast[np.abs(grid.values - 2.5) > 0.05])
    assert at_peak > 0.2
    assert np.percentile(away, 99) < at_peak / 2
