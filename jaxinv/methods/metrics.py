"""Measurements of pre-images (IJCV Sect. 5, CVPR 2015 Sect. 4)."""
from __future__ import annotations

import numpy as np

Z_95 = 1.959964


def normalised_error(phi, phi0) -> float:
    """IJCV Eq. 3 with M = 1: ||Phi(x*) - Phi0||^2 / ||Phi0||^2 (a fraction, not percent)."""
    phi, phi0 = np.asarray(phi, np.float64), np.asarray(phi0, np.float64)
    return float(np.sum((phi - phi0) ** 2) / np.sum(phi0 ** 2))


def mean_with_ci95(values) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval (normal approximation, 1.96 s / sqrt(n))."""
    values = np.asarray(values, np.float64).ravel()
    if values.size < 2:
        return float(values.mean()), float("nan")
    return float(values.mean()), float(Z_95 * values.std(ddof=1) / np.sqrt(values.size))


def shown(value, spec: str = ".3f") -> str:
    """A statistic as printed: formatted by `spec`, or "-" when undefined (None, NaN: the spread of one restart,
    the interval of one image) or infinite."""
    if value is None or not np.isfinite(value):
        return "-"
    return format(value, spec)


def average_pairwise_distance(codes) -> float:
    """N_Phi: the mean Euclidean distance between the codes of distinct images (CVPR 2015)."""
    flat = np.asarray(codes, np.float64).reshape(len(codes), -1)
    if len(flat) < 2:
        raise ValueError("N_Phi needs the codes of at least two images")
    sq = np.sum(flat ** 2, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * flat @ flat.T, 0)
    iu = np.triu_indices(len(flat), k=1)
    return float(np.mean(np.sqrt(d2[iu])))


def cvpr_errors(reconstructed_codes, reference_codes) -> np.ndarray:
    """CVPR 2015 error per image: ||Phi(x*_i) - Phi(x_i)||_2 / N_Phi."""
    rec = np.asarray(reconstructed_codes, np.float64).reshape(len(reconstructed_codes), -1)
    ref = np.asarray(reference_codes, np.float64).reshape(len(reference_codes), -1)
    return np.linalg.norm(rec - ref, axis=1) / average_pairwise_distance(ref)


def restart_spread(errors_per_restart) -> float:
    """Standard deviation of the error over the K restarts of one image."""
    return float(np.std(np.asarray(errors_per_restart, np.float64), ddof=1))
