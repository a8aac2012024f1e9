"""Robust similarity fits from model camera centres to GPS positions: 2D (east/north) and 3D.

RANSAC over minimal samples (two points fix a 2D similarity, three a 3D one), then least squares on the
inliers, with the inlier threshold widened to three robust standard deviations of the residuals when the GPS
is noisier than `max_error_m` (camera GPS: metres of noise per fix), so good fixes are kept and blunders are
not. 2D uses complex numbers: w = a z + b with a = s e^{i theta}; 3D uses Umeyama's closed form (pycolmap's
sim3 estimator returns nothing for camera centres that lie exactly on a plane).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RAYLEIGH_MEDIAN = 1.1774  # median of a 2D Gaussian error's length, in standard deviations
MAXWELL_MEDIAN = 1.5382  # the same for a 3D Gaussian error


@dataclass
class Similarity2D:
    a: complex  # scale * e^(i theta)
    b: complex
    inliers: np.ndarray  # bool per point

    @property
    def scale(self) -> float:
        return float(abs(self.a))

    @property
    def angle_rad(self) -> float:
        return float(np.angle(self.a))

    def apply(self, xy: np.ndarray) -> np.ndarray:
        w = self.a * (xy[:, 0] + 1j * xy[:, 1]) + self.b
        return np.column_stack([w.real, w.imag])


def _least_squares(z: np.ndarray, w: np.ndarray) -> tuple[complex, complex]:
    zc, wc = z - z.mean(), w - w.mean()
    a = complex(np.sum(wc * np.conj(zc)) / np.sum(np.abs(zc) ** 2))
    return a, complex(w.mean() - a * z.mean())


def fit_similarity_2d(src: np.ndarray, tgt: np.ndarray, max_error_m: float, iterations: int = 500,
                      seed: int = 0) -> Similarity2D | None:
    """Similarity from src (N, 2) to tgt (N, 2); None when the points do not fix one (fewer than 2 distinct)."""
    z = src[:, 0] + 1j * src[:, 1]
    w = tgt[:, 0] + 1j * tgt[:, 1]
    n = len(z)
    if n < 2 or np.max(np.abs(z - z.mean())) < 1e-9:
        return None
    rng = np.random.default_rng(seed)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    if len(pairs) > iterations:
        pairs = [tuple(rng.choice(n, 2, replace=False)) for _ in range(iterations)]
    best: tuple[int, float, np.ndarray] | None = None
    for i, j in pairs:
        if abs(z[i] - z[j]) < 1e-12:
            continue
        a = (w[i] - w[j]) / (z[i] - z[j])
        b = w[i] - a * z[i]
        errors = np.abs(a * z + b - w)
        inliers = errors <= max_error_m
        score = (int(inliers.sum()), -float(np.sum(np.minimum(errors, max_error_m) ** 2)))
        if best is None or score > best[:2]:
            best = (score[0], score[1], inliers)
    if best is None:
        return None
    inliers = best[2]
    if inliers.sum() < 2:
        return None
    threshold = max_error_m
    for _ in range(5):
        a, b = _least_squares(z[inliers], w[inliers])
        errors = np.abs(a * z + b - w)
        sigma = float(np.median(errors[inliers])) / RAYLEIGH_MEDIAN
        threshold = max(max_error_m, 3.0 * sigma)
        new = errors <= threshold
        if new.sum() < 2 or np.array_equal(new, inliers):
            break
        inliers = new
    a, b = _least_squares(z[inliers], w[inliers])
    return Similarity2D(a, b, inliers)


@dataclass
class Similarity3D:
    scale: float
    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)
    inliers: np.ndarray

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * points @ self.rotation.T + self.translation


def umeyama(src: np.ndarray, tgt: np.ndarray) -> tuple[float, np.ndarray, np.ndarray] | None:
    """(scale, rotation, translation) minimising |scale R src + t - tgt|^2; None for fewer than two directions."""
    mu_s, mu_t = src.mean(axis=0), tgt.mean(axis=0)
    s0, t0 = src - mu_s, tgt - mu_t
    variance = float(np.mean(np.sum(s0**2, axis=1)))
    u, d, vt = np.linalg.svd(t0.T @ s0 / len(src))
    if variance <= 0 or d[1] <= 1e-9 * max(d[0], 1e-300):
        return None
    sign = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(d) @ sign) / variance)
    return scale, rotation, mu_t - scale * rotation @ mu_s


def fit_similarity_3d(src: np.ndarray, tgt: np.ndarray, max_error_m: float, iterations: int = 500,
                      seed: int = 0) -> Similarity3D | None:
    """Similarity from src (N, 3) to tgt (N, 3); None when no three points fix one."""
    n = len(src)
    if n < 3:
        return None
    rng = np.random.default_rng(seed)
    best: tuple[int, float, np.ndarray] | None = None
    for _ in range(iterations):
        sample = rng.choice(n, 3, replace=False)
        fit = umeyama(src[sample], tgt[sample])
        if fit is None or fit[0] <= 0:
            continue
        scale, rotation, translation = fit
        errors = np.linalg.norm(scale * src @ rotation.T + translation - tgt, axis=1)
        inliers = errors <= max_error_m
        score = (int(inliers.sum()), -float(np.sum(np.minimum(errors, max_error_m) ** 2)))
        if best is None or score > best[:2]:
            best = (score[0], score[1], inliers)
    if best is None or best[0] < 3:
        return None
    inliers = best[2]
    for _ in range(5):
        fit = umeyama(src[inliers], tgt[inliers])
        if fit is None:
            return None
        errors = np.linalg.norm(fit[0] * src @ fit[1].T + fit[2] - tgt, axis=1)
        sigma = float(np.median(errors[inliers])) / MAXWELL_MEDIAN
        new = errors <= max(max_error_m, 3.0 * sigma)
        if new.sum() < 3 or np.array_equal(new, inliers):
            break
        inliers = new
    fit = umeyama(src[inliers], tgt[inliers])
    if fit is None or fit[0] <= 0 or not np.isfinite(fit[0]):
        return None
    return Similarity3D(fit[0], fit[1], fit[2], inliers)
