"""Elicitation gap, predicted post-RL pass@1 and the GO/SKIP verdict (the seed's decision rule).

RL with a verifiable reward moves mass toward the best of K; it closes a fraction gamma of the
gap pass@K - pass@1 (published runs: gamma in [0.6, 0.9]; 0.7 is the planning value)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastpass.stats import PassKCurve, pass_at_k_matrix

GAMMA_BAND = (0.6, 0.9)


def _curve_dict(curve) -> dict[int, float]:
    if isinstance(curve, PassKCurve):
        return curve.to_dict()
    if isinstance(curve, dict):
        if not curve:
            raise ValueError("the curve is empty: pass {k: pass@k} with at least k = 1")
        return {int(k): float(v) for k, v in curve.items()}
    raise TypeError(f"expected a PassKCurve or a {{k: pass@k}} dict, got {type(curve).__name__}")


def _pass_at(curve, K: int) -> float:
    d = _curve_dict(curve)
    if K in d:
        return d[K]
    if isinstance(curve, PassKCurve) and curve.n is not None and K <= int(curve.n.min()):
        return float(pass_at_k_matrix(curve.n, curve.c, [K], curve.estimator).mean())
    raise ValueError(f"pass@{K} is not on the curve (ks = {sorted(d)}): compute the curve with "
                     f"ks including {K}")


def elicitation_gap(curve, K: int) -> float:
    """Delta_K = pass@K - pass@1."""
    return _pass_at(curve, K) - _pass_at(curve, 1)


@dataclass
class Prediction:
    """Predicted post-RL pass@1 at ``gamma``, with the values at the ends of the gamma band."""

    value: float | np.ndarray
    low: float | np.ndarray
    high: float | np.ndarray
    gamma: float
    K_train: int

    def __float__(self) -> float:
        return float(self.value)

    def to_dict(self) -> dict:
        conv = lambda v: v.tolist() if isinstance(v, np.ndarray) else float(v)
        return {"value": conv(self.value), "gamma": self.gamma, "K_train": self.K_train,
                "gamma_band": list(GAMMA_BAND), "low": conv(self.low), "high": conv(self.high)}


def predict_post_rl(curve_or_p1, K_train: int = 64, gamma: float = 0.7) -> Prediction:
    """Aggregate form (curve in): pass@1 + gamma * (pass@K_train - pass@1).
    Per-problem form (array of p1 in): p1 + gamma * (1 - (1 - p1)^K_train - p1)."""
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    if int(K_train) != K_train or K_train < 1:
        raise ValueError(f"K_train must be a positive integer, got {K_train}")
    if isinstance(curve_or_p1, (PassKCurve, dict)):
        p1 = _pass_at(curve_or_p1, 1)
        gap = _pass_at(curve_or_p1, int(K_train)) - p1
        at = lambda g: p1 + g * gap
    else:
        p = np.asarray(curve_or_p1, dtype=np.float64)
        if ((p < 0) | (p > 1) | ~np.isfinite(p)).any():
            raise ValueError("per-problem pass@1 values must lie in [0, 1]")
        with np.errstate(divide="ignore"):
            gap = -np.expm1(K_train * np.log1p(-p)) - p  # p = 1: -expm1(-inf) - 1 = 0
        at = (lambda g: float(p + g * gap)) if p.ndim == 0 else (lambda g: p + g * gap)
    return Prediction(at(gamma), at(GAMMA_BAND[0]), at(GAMMA_BAND[1]), float(gamma), int(K_train))


@dataclass
class Verdict:
    pass1: float
    pass_kmax: float
    kmax: int
    gap: float
    expected_pass1: float
    expected_lift_pp: float
    estimated_cost_usd: float
    decision: str
    gamma: float
    gamma_band: dict
    intervals: dict | None = None

    def to_dict(self) -> dict:
        d = {
            "pass@1(base)": self.pass1,
            "pass@Kmax(base)": self.pass_kmax,
            "elicitation_gap": self.gap,
            "expected_pass@1": self.expected_pass1,
            "expected_lift_pp": self.expected_lift_pp,
            "estimated_cost_USD": self.estimated_cost_usd,
            "decision": self.decision,
            "Kmax": self.kmax,
            "gamma": self.gamma,
            "gamma_band": self.gamma_band,
        }
        if self.intervals is not None:
            d["intervals"] = self.intervals
        return d


def verdict(curve, gamma: float = 0.7, min_lift: float = 0.05,
            cost_per_pp_usd: float = 250_000) -> Verdict:
    """GO when gamma * (pass@Kmax - pass@1) >= min_lift, else SKIP (the seed's rule)."""
    d = _curve_dict(curve)
    if 1 not in d:
        raise ValueError(f"the curve needs pass@1 (ks = {sorted(d)})")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    p1 = d[1]
    kmax = max(d, key=lambda k: (d[k], k))
    p_kmax = d[kmax]
    gap = p_kmax - p1
    lift = gamma * gap

    def at(g):
        return {"gamma": g, "expected_pass@1": p1 + g * gap, "expected_lift_pp": 100.0 * g * gap,
                "estimated_cost_USD": 100.0 * g * gap * cost_per_pp_usd}

    band = {"low": at(GAMMA_BAND[0]), "high": at(GAMMA_BAND[1])}
    intervals = None
    if isinstance(curve, PassKCurve) and curve.lo is not None:
        iv = curve.intervals()
        intervals = {"method": curve.ci, "pass@1(base)": list(iv[1]) if 1 in iv else None,
                     "pass@Kmax(base)": list(iv[kmax]) if kmax in iv else None}
    return Verdict(p1, p_kmax, int(kmax), gap, p1 + lift, 100.0 * lift,
                   100.0 * lift * cost_per_pp_usd, "GO" if lift >= min_lift else "SKIP",
                   float(gamma), band, intervals)
