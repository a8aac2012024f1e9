"""Robust similarity fits from model camera centres to GPS positions, 2D (east/north) and 3D, with the
uncertainty of their scale and heading.

Camera GPS is noisy (metres to tens of metres per fix) and now and then wrong by much more. A fit that keeps
only the fixes within a fixed distance of a RANSAC consensus calls half of a noisy track outliers and then
understates the noise. So every fix takes part in a fit with a Huber loss on its residual length, from a
least-median start (no threshold to choose), the noise level re-estimated from the residuals as the fit
goes. A fix is an outlier only when its residual is beyond `OUTLIER_SIGMAS` noise levels, a length a
Gaussian error reaches once in a thousand fixes (and beyond `max_error_m`, so exact GPS keeps a tolerance).
The published fit is then least squares on every fix that is not an outlier: with Gaussian noise and no
blunder it is exactly the similarity the fixes imply (the benchmarks' "GPS-implied" scale), where Huber
weights would move it by a sixth of its uncertainty.

The uncertainty is the least-squares covariance of the fit's scale and heading: the noise level
from the residuals, the geometry from the positions (a wider track fixes both better). GPS errors of
consecutive photos are alike (a receiver drifts), which makes a track worth fewer independent fixes than it
has: the covariance grows by (1 + rho) / (1 - rho), rho the lag-1 correlation of the residuals in capture
order (AR(1); no growth when rho <= 0). On simulated lawnmower tracks the 1-sigma figure covers the true error
68 % of the time for independent noise and for AR(1) noise with rho = 0.8.

2D uses complex numbers: w = a z + b with a = s e^{i theta}; 3D uses Umeyama's closed form, weighted
(pycolmap's sim3 estimator returns nothing for camera centres that lie exactly on a plane, and has no
weights).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

RAYLEIGH_MEDIAN = 1.1774  # median of a 2D Gaussian error's length, in standard deviations per axis
MAXWELL_MEDIAN = 1.5382  # the same for a 3D Gaussian error
# residual lengths a Gaussian error exceeds once in 1000 fixes, in standard deviations per axis
OUTLIER_SIGMAS = {2: 3.717, 3: 4.033}
HUBER_K = 2.0  # residual lengths beyond this many sigma get weight k sigma / r (about 1 in 7 in 2D)
MAX_CORRELATION = 0.95  # the covariance grows at most (1 + 0.95) / (1 - 0.95) = 39x
SAMPLES = 500  # least-median start: minimal samples tried
MAX_ITERATIONS = 100


@dataclass
class Uncertainty:
    """1-sigma uncertainty of a fit, from its residuals and the geometry of the fixes."""

    sigma_m: float  # GPS noise per axis, estimated from the residuals of the kept fixes
    scale: float  # relative (0.03: 3 %)
    heading_rad: float
    residual_correlation: float  # lag-1, capture order, clipped to [0, MAX_CORRELATION]

    @property
    def heading_deg(self) -> float:
        return math.degrees(self.heading_rad)


@dataclass
class Similarity2D:
    a: complex  # scale * e^(i theta)
    b: complex
    inliers: np.ndarray  # bool per point: not an outlier
    weights: np.ndarray  # of the published least-squares fit: 1, or 0 for an outlier
    uncertainty: Uncertainty

    @property
    def scale(self) -> float:
        return float(abs(self.a))

    @property
    def angle_rad(self) -> float:
        return float(np.angle(self.a))

    def apply(self, xy: np.ndarray) -> np.ndarray:
        w = self.a * (xy[:, 0] + 1j * xy[:, 1]) + self.b
        return np.column_stack([w.real, w.imag])


@dataclass
class Similarity3D:
    scale: float
    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)
    inliers: np.ndarray
    weights: np.ndarray
    uncertainty: Uncertainty

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * points @ self.rotation.T + self.translation


def _weighted_2d(z: np.ndarray, w: np.ndarray, weights: np.ndarray) -> tuple[complex, complex]:
    total = weights.sum()
    mz, mw = np.sum(weights * z) / total, np.sum(weights * w) / total
    zc, wc = z - mz, w - mw
    a = complex(np.sum(weights * wc * np.conj(zc)) / np.sum(weights * np.abs(zc) ** 2))
    return a, complex(mw - a * mz)


def umeyama(src: np.ndarray, tgt: np.ndarray, weights: np.ndarray | None = None
            ) -> tuple[float, np.ndarray, np.ndarray] | None:
    """(scale, rotation, translation) minimising sum w |scale R src + t - tgt|^2; None for fewer than two
    directions."""
    weights = np.ones(len(src)) if weights is None else weights
    total = weights.sum()
    if total <= 0:
        return None
    mu_s, mu_t = weights @ src / total, weights @ tgt / total
    s0, t0 = src - mu_s, tgt - mu_t
    variance = float(weights @ np.sum(s0**2, axis=1) / total)
    u, d, vt = np.linalg.svd((t0 * weights[:, None]).T @ s0 / total)
    if variance <= 0 or d[1] <= 1e-9 * max(d[0], 1e-300):
        return None
    sign = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(d) @ sign) / variance)
    return scale, rotation, mu_t - scale * rotation @ mu_s


def _sigma(lengths: np.ndarray, dims: int) -> float:
    return float(np.median(lengths)) / (RAYLEIGH_MEDIAN if dims == 2 else MAXWELL_MEDIAN)


def _weights(lengths: np.ndarray, sigma: float, max_error_m: float, dims: int) -> np.ndarray:
    """Huber weights on residual lengths, zero beyond the outlier distance."""
    weights = np.minimum(1.0, HUBER_K * sigma / np.maximum(lengths, 1e-300))
    weights[lengths > max(max_error_m, OUTLIER_SIGMAS[dims] * sigma)] = 0.0
    return weights


def _outside(lengths: np.ndarray, kept: np.ndarray, max_error_m: float, dims: int, floor: float) -> np.ndarray:
    """The fixes within the outlier distance, with the noise from the RMS of the kept fixes' residuals over the
    degrees of freedom the fit leaves (steadier than their median, once the blunders are out)."""
    dof = dims * int(kept.sum()) - (4 if dims == 2 else 7)
    sigma = max(float(np.sqrt(np.sum(lengths[kept] ** 2) / dof)), floor) if dof > 0 else math.inf
    return lengths <= max(max_error_m, OUTLIER_SIGMAS[dims] * sigma)


def _correlation(residuals: np.ndarray) -> float:
    """Lag-1 correlation of residual vectors (N, d) in the given order, clipped to [0, MAX_CORRELATION]."""
    if len(residuals) < 3:
        return 0.0
    energy = float(np.sum(residuals**2))
    if energy <= 0:
        return 0.0
    rho = float(np.sum(residuals[1:] * residuals[:-1])) / energy
    return min(max(rho, 0.0), MAX_CORRELATION)


def similarity_uncertainty(mapped: np.ndarray, residuals: np.ndarray, weights: np.ndarray,
                           order: np.ndarray | None = None) -> Uncertainty:
    """Scale and heading uncertainty of a weighted least-squares similarity fit.

    `mapped` (N, d): the fitted scale and rotation applied to the source points (d = 2: east/north; 3: ENU);
    `residuals` (N, d): fitted minus GPS; `weights`: the fit's final weights (0: left out); `order`: the
    points' capture order (indices), for the correlation of consecutive residuals. Linearised: scale as
    log s, rotation as a small angle (about up in 2D, a 3-vector in 3D, whose up part is the heading).
    """
    dims = mapped.shape[1]
    kept = weights > 0
    params = 4 if dims == 2 else 7
    n = int(kept.sum())
    p = mapped - (weights @ mapped) / weights.sum()  # centred on the weighted centroid: translation decouples
    if dims == 2:
        jacobians = np.stack([p, np.column_stack([-p[:, 1], p[:, 0]])], axis=2)  # (N, 2, [log s, theta])
    else:
        skew = np.zeros((len(p), 3, 3))
        skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -p[:, 2], p[:, 1], -p[:, 0]
        skew[:, 1, 0], skew[:, 2, 0], skew[:, 2, 1] = p[:, 2], -p[:, 1], p[:, 0]
        jacobians = np.concatenate([p[:, :, None], -skew], axis=2)  # (N, 3, [log s, wx, wy, wz])
    jtj = np.einsum("nij,nik->njk", jacobians, jacobians)
    normal = np.einsum("n,njk->jk", weights, jtj)
    meat = np.einsum("n,njk->jk", weights**2, jtj)
    dof = dims * n - params
    sigma = float(np.sqrt(np.sum(residuals[kept] ** 2) / dof)) if dof > 0 else math.inf
    order = np.arange(len(residuals)) if order is None else order
    rho = _correlation(residuals[order][kept[order]])
    try:
        inverse = np.linalg.inv(normal)
    except np.linalg.LinAlgError:
        return Uncertainty(sigma, math.inf, math.inf, rho)
    covariance = sigma**2 * (1 + rho) / (1 - rho) * inverse @ meat @ inverse
    variances = np.diag(covariance)
    if not np.all(np.isfinite(variances)):
        return Uncertainty(sigma, math.inf, math.inf, rho)
    return Uncertainty(sigma, float(np.sqrt(max(variances[0], 0.0))), float(np.sqrt(max(variances[-1], 0.0))), rho)


def fit_similarity_2d(src: np.ndarray, tgt: np.ndarray, max_error_m: float, order: np.ndarray | None = None,
                      seed: int = 0) -> Similarity2D | None:
    """Similarity from src (N, 2) to tgt (N, 2); None when the points do not fix one (fewer than 3 distinct,
    or fewer than 3 left after the outliers). `order`: capture order of the points (default: as given)."""
    z = src[:, 0] + 1j * src[:, 1]
    w = tgt[:, 0] + 1j * tgt[:, 1]
    n = len(z)
    if n < 3 or np.max(np.abs(z - z.mean())) < 1e-9:
        return None
    rng = np.random.default_rng(seed)
    if n * (n - 1) // 2 <= SAMPLES:
        i, j = np.triu_indices(n, 1)
    else:
        i, j = rng.integers(0, n, SAMPLES), rng.integers(0, n, SAMPLES)
    usable = np.abs(z[i] - z[j]) >= 1e-12
    if not usable.any():
        return None
    i, j = i[usable], j[usable]
    a_all = (w[i] - w[j]) / (z[i] - z[j])
    b_all = w[i] - a_all * z[i]
    # least median of squares: the start needs no threshold
    best = int(np.argmin(np.median(np.abs(a_all[:, None] * z[None, :] + b_all[:, None] - w[None, :]), axis=1)))
    a, b = complex(a_all[best]), complex(b_all[best])
    floor = 1e-9 * (1.0 + float(np.max(np.abs(w - w.mean()))))
    weights = np.ones(n)
    for _ in range(MAX_ITERATIONS):
        lengths = np.abs(a * z + b - w)
        sigma = max(_sigma(lengths[weights > 0] if np.any(weights > 0) else lengths, 2), floor)
        new = _weights(lengths, sigma, max_error_m, 2)
        if np.count_nonzero(new) < 3:
            return None
        a_new, b_new = _weighted_2d(z, w, new)
        converged = np.allclose(new, weights, rtol=1e-9, atol=1e-12) and abs(a_new - a) <= 1e-10 * abs(a)
        a, b, weights = a_new, b_new, new
        if converged:
            break
    # the published fit: least squares on every fix that is not an outlier, by the noise its residuals show
    published = _least_squares_on_inliers(weights > 0, lambda wts: _weighted_2d(z, w, wts),
                                          lambda fit: np.abs(fit[0] * z + fit[1] - w), max_error_m, 2, floor)
    if published is None:
        return None
    (a, b), kept = published
    weights = kept.astype(float)
    mapped = a * z  # scale and rotation applied (translation does not enter the uncertainty)
    residual = a * z + b - w
    uncertainty = similarity_uncertainty(np.column_stack([mapped.real, mapped.imag]),
                                         np.column_stack([residual.real, residual.imag]), weights, order)
    return Similarity2D(a, b, weights > 0, weights, uncertainty)


def _least_squares_on_inliers(kept: np.ndarray, fit_with: Callable[[np.ndarray], Any],
                              lengths_of: Callable[[Any], np.ndarray], max_error_m: float, dims: int,
                              floor: float) -> tuple[Any, np.ndarray] | None:
    """The published fit, 2D or 3D alike: least squares (`fit_with` 0/1 weights) on the fixes not outliers by the
    noise their own residuals show, until the set of kept fixes stops changing; None when fewer than 3 remain or
    the fit fails."""
    fit = None
    for _ in range(MAX_ITERATIONS):
        fit = fit_with(kept.astype(float))
        if fit is None:
            return None
        new = _outside(lengths_of(fit), kept, max_error_m, dims, floor)
        if np.count_nonzero(new) < 3:
            return None
        if np.array_equal(new, kept):
            break
        kept = new
    return fit, kept


def fit_similarity_3d(src: np.ndarray, tgt: np.ndarray, max_error_m: float, order: np.ndarray | None = None,
                      seed: int = 0) -> Similarity3D | None:
    """Similarity from src (N, 3) to tgt (N, 3); None when no three points fix one."""
    n = len(src)
    if n < 3:
        return None
    rng = np.random.default_rng(seed)
    best: tuple[float, tuple[float, np.ndarray, np.ndarray]] | None = None
    for _ in range(SAMPLES):
        sample = rng.choice(n, 3, replace=False)
        fit = umeyama(src[sample], tgt[sample])
        if fit is None or fit[0] <= 0:
            continue
        scale, rotation, translation = fit
        score = float(np.median(np.linalg.norm(scale * src @ rotation.T + translation - tgt, axis=1)))
        if best is None or score < best[0]:
            best = (score, fit)
    if best is None:
        return None
    fit = best[1]
    floor = 1e-9 * (1.0 + float(np.max(np.linalg.norm(tgt - tgt.mean(axis=0), axis=1))))
    weights = np.ones(n)
    for _ in range(MAX_ITERATIONS):
        lengths = np.linalg.norm(fit[0] * src @ fit[1].T + fit[2] - tgt, axis=1)
        sigma = max(_sigma(lengths[weights > 0], 3), floor)
        new = _weights(lengths, sigma, max_error_m, 3)
        if np.count_nonzero(new) < 3:
            return None
        refit = umeyama(src, tgt, new)
        if refit is None or refit[0] <= 0 or not np.isfinite(refit[0]):
            return None
        converged = (np.allclose(new, weights, rtol=1e-9, atol=1e-12)
                     and abs(refit[0] - fit[0]) <= 1e-10 * abs(fit[0]))
        fit, weights = refit, new
        if converged:
            break
    # the published fit: least squares on every fix that is not an outlier, by the noise its residuals show
    def proper_umeyama(wts: np.ndarray):
        fit = umeyama(src, tgt, wts)
        return None if fit is None or fit[0] <= 0 or not np.isfinite(fit[0]) else fit

    published = _least_squares_on_inliers(
        weights > 0, proper_umeyama, lambda fit: np.linalg.norm(fit[0] * src @ fit[1].T + fit[2] - tgt, axis=1),
        max_error_m, 3, floor)
    if published is None:
        return None
    fit, kept = published
    weights = kept.astype(float)
    scale, rotation, translation = fit
    mapped = scale * src @ rotation.T
    uncertainty = similarity_uncertainty(mapped, mapped + translation - tgt, weights, order)
    return Similarity3D(scale, rotation, translation, weights > 0, weights, uncertainty)
