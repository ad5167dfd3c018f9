"""Seeded 95% intervals for pass@k curves."""
from __future__ import annotations

import numpy as np


def bootstrap_interval(matrix: np.ndarray, n_boot: int, seed: int, level: float):
    """Percentile bootstrap over problems; ``matrix`` is per-problem pass@k [P, len(ks)]."""
    means = bootstrap_means(matrix, n_boot, seed)
    tail = (1.0 - level) / 2
    return np.quantile(means, tail, axis=0), np.quantile(means, 1 - tail, axis=0)


def bootstrap_means(matrix: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, columns]: column means of ``matrix`` [P, columns] over problems resampled with
    replacement. Resampling = multinomial weights, applied in chunks so memory stays at
    chunk x P even for 1e5 problems."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    rng = np.random.default_rng(seed)
    num = matrix.shape[0]
    means = np.empty((n_boot, matrix.shape[1]))
    chunk = max(1, min(n_boot, 2_000_000 // max(num, 1)))
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        weights = rng.multinomial(num, np.full(num, 1.0 / num), size=stop - start)
        means[start:stop] = weights @ matrix / num
    return means


def beta_interval(n: np.ndarray, c: np.ndarray, ks: np.ndarray, n_draws: int, seed: int,
                  level: float):
    """Each problem's rate p ~ Beta(c+1, n-c+1) (uniform prior); pass@k = 1-(1-p)^k averaged."""
    rng = np.random.default_rng(seed)
    means = np.empty((n_draws, ks.size))
    chunk = max(1, min(n_draws, 4_000_000 // max(n.size * ks.size, 1)))
    for start in range(0, n_draws, chunk):
        stop = min(n_draws, start + chunk)
        p = rng.beta(c + 1.0, n - c + 1.0, size=(stop - start, n.size))
        log_miss = np.log1p(-p)[..., None] * ks  # [draws, P, K]
        means[start:stop] = (-np.expm1(log_miss)).mean(axis=1)
    tail = (1.0 - level) / 2
    return np.quantile(means, tail, axis=0), np.quantile(means, 1 - tail, axis=0)
