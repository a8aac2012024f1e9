"""The robust similarity fits and their stated uncertainty, on simulated GPS tracks (no SfM): the 1-sigma
scale uncertainty covers the true scale error as often as a 1-sigma figure should, for independent fixes and
for fixes whose errors drift together."""

from __future__ import annotations

import numpy as np
import pytest

from spaceport_dagster.stages.sfm.robust_fit import fit_similarity_2d, fit_similarity_3d

MODEL_SCALE, MODEL_TURN = 0.2, 0.7  # model units per metre, model frame's turn from east (radians)


def lawnmower(lines: int = 6, shots: int = 11) -> np.ndarray:
    """East/north of a lawnmower flight in capture order: 18 m between lines, 10 m between shots."""
    out = []
    for line in range(lines):
        for shot in range(shots) if line % 2 == 0 else reversed(range(shots)):
            out.append([18.0 * line, 10.0 * shot])
    return np.array(out)


def to_model(enu_xy: np.ndarray) -> np.ndarray:
    c, s = np.cos(MODEL_TURN), np.sin(MODEL_TURN)
    return MODEL_SCALE * enu_xy @ np.array([[c, -s], [s, c]]).T + [3.0, -1.0]


def ar1_noise(rng: np.random.Generator, n: int, sigma: float, rho: float) -> np.ndarray:
    """GPS errors whose consecutive fixes are correlated by `rho` (a receiver that drifts), `sigma` per axis."""
    out = np.zeros((n, 2))
    out[0] = rng.normal(0, sigma, 2)
    for i in range(1, n):
        out[i] = rho * out[i - 1] + np.sqrt(1 - rho**2) * rng.normal(0, sigma, 2)
    return out


def coverage(noise: str, trials: int = 300) -> tuple[float, float, float]:
    """Over `trials` tracks: the fraction whose scale and heading errors lie within 1 sigma and 2 sigma as
    stated by the fit, and the mean estimated residual correlation."""
    rng = np.random.default_rng(11)
    track = lawnmower()
    src = to_model(track)
    within1, within2, rhos = [], [], []
    for _ in range(trials):
        errors = rng.normal(0, 15.0, track.shape) if noise == "independent" else ar1_noise(rng, len(track), 15.0, 0.8)
        fit = fit_similarity_2d(src, track + errors, max_error_m=10.0)
        assert fit is not None
        u = fit.uncertainty
        scale_error = fit.scale * MODEL_SCALE - 1
        heading_error = fit.angle_rad + MODEL_TURN
        ratios = [abs(scale_error) / u.scale, abs(heading_error) / u.heading_rad]
        within1 += [r <= 1 for r in ratios]
        within2 += [r <= 2 for r in ratios]
        rhos.append(u.residual_correlation)
    return float(np.mean(within1)), float(np.mean(within2)), float(np.mean(rhos))


def test_stated_uncertainty_covers_independent_gps_noise_as_one_sigma_should() -> None:
    one, two, rho = coverage("independent")
    assert 0.62 <= one <= 0.75, one  # 68 % for a calibrated 1-sigma
    assert 0.92 <= two <= 0.98, two  # 95 %
    assert rho < 0.1


def test_stated_uncertainty_grows_for_gps_errors_that_drift_together() -> None:
    one, two, rho = coverage("correlated")
    assert rho > 0.5  # seen in the residuals in capture order
    assert 0.58 <= one <= 0.8 and 0.88 <= two <= 0.99, (one, two)  # independent-noise figures: ~30 % and ~57 %


def test_exact_positions_give_zero_uncertainty_and_an_exact_fit() -> None:
    track = lawnmower(3, 4)
    fit = fit_similarity_2d(to_model(track), track, max_error_m=10.0)
    assert fit is not None and fit.inliers.all()
    assert fit.scale == pytest.approx(1 / MODEL_SCALE, rel=1e-9)
    assert fit.uncertainty.scale < 1e-9 and fit.uncertainty.sigma_m < 1e-9


def test_blunders_are_outliers_and_do_not_pull_the_fit() -> None:
    rng = np.random.default_rng(2)
    track = lawnmower()
    written = track + rng.normal(0, 5.0, track.shape)
    written[[5, 40]] += [[80.0, 0.0], [0.0, -120.0]]
    fit = fit_similarity_2d(to_model(track), written, max_error_m=10.0)
    assert fit is not None
    assert sorted(np.flatnonzero(~fit.inliers)) == [5, 40]
    assert fit.weights[5] == 0 and fit.weights[40] == 0
    assert abs(fit.scale * MODEL_SCALE - 1) < 3 * fit.uncertainty.scale
    assert fit.uncertainty.sigma_m == pytest.approx(5.0, rel=0.2)


def test_3d_fit_recovers_the_similarity_and_states_its_uncertainty() -> None:
    rng = np.random.default_rng(5)
    track = np.column_stack([lawnmower(), np.full(66, 40.0)])
    angle = 0.4
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1.0]])
    src = 0.5 * track @ rotation.T + [1.0, 2.0, 3.0]
    written = track + rng.normal(0, 2.0, track.shape)
    fit = fit_similarity_3d(src, written, max_error_m=10.0)
    assert fit is not None and fit.inliers.all()
    assert abs(fit.scale * 0.5 - 1) < 3 * fit.uncertainty.scale
    assert fit.uncertainty.scale == pytest.approx(2.0 / np.sqrt(np.sum((track - track.mean(0)) ** 2)), rel=0.3)
    assert fit.uncertainty.sigma_m == pytest.approx(2.0, rel=0.2)
