"""Elicitation gap, predicted post-RL pass@1 and the GO / SKIP / INCONCLUSIVE verdict.

RL with a verifiable reward moves mass toward the best of K; it closes a fraction gamma of the
gap pass@K - pass@1 (published runs: gamma in [0.6, 0.9]; 0.7 is the planning value).

The after-RL model, one formula everywhere (verdict, report curve, fate table, simulator): each
problem's rate p1 moves to p1 + gamma * (pass@K_train - p1); after RL, pass@k = mean 1 - (1 - p1')^k.
The simulator knows each problem's true rate; a screen estimates it from c of n samples."""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from fastpass.stats import PassKCurve, pass_at_k_matrix

GAMMA_BAND = (0.6, 0.9)


def gamma_value(gamma) -> float:
    """gamma as a float: a number, or a calibration (anything with a ``gamma`` attribute)."""
    try:
        return float(getattr(gamma, "gamma", gamma))
    except (TypeError, ValueError):
        raise ValueError(f"gamma must be a number in [0, 1] or a calibration, got {gamma!r}") from None


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
    Per-problem form (array of p1 in): p1 + gamma * (1 - (1 - p1)^K_train - p1).
    ``gamma`` may be a calibration (fp.load_calibration), as in fp.verdict."""
    gamma = gamma_value(gamma)
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



def per_problem_pass_at(n, c, K: int, estimator: str = "unbiased") -> tuple[np.ndarray, np.ndarray]:
    """Each problem's pass@K from its counts, and a mask of the problems where it is extrapolated.

    The unbiased 1 - C(n-c, K)/C(n, K) where K <= n; beyond n no unbiased estimator exists and
    the plug-in 1 - (1 - c/n)^K (the seed's per-problem model with p1 = c/n) stands in."""
    n = np.asarray(n, dtype=np.int64)
    c = np.asarray(c, dtype=np.int64)
    K = int(K)
    extrapolated = (n < K) if estimator == "unbiased" else np.zeros(n.shape, dtype=bool)
    out = np.empty(n.size, dtype=np.float64)
    inside = ~extrapolated
    if inside.any():
        out[inside] = pass_at_k_matrix(n[inside], c[inside], [K], estimator)[:, 0]
    if extrapolated.any():
        rate = c[extrapolated] / n[extrapolated]
        with np.errstate(divide="ignore"):
            out[extrapolated] = -np.expm1(K * np.log1p(-rate))  # rate 1: -expm1(-inf) = 1
    return out, extrapolated


def post_rl_rates(curve: PassKCurve, K_train: int, gamma: float = 0.7) -> Prediction:
    """Per-problem form from measured counts: arrays p1_i + g * (pass@K_train_i - p1_i) at gamma
    and at the ends of the gamma band (pass@K_train_i as in :func:`per_problem_pass_at`). Their
    means are the verdict's expected pass@1 for the same K_train."""
    if not isinstance(curve, PassKCurve) or curve.n is None:
        raise ValueError("post_rl_rates needs a curve with per-problem counts (fp.pass_at_k_curve(n, c))")
    p1 = curve.c / curve.n
    pk, _ = per_problem_pass_at(curve.n, curve.c, K_train, curve.estimator)
    gap = np.maximum(pk - p1, 0.0)  # pass@K >= c/n always; max() only guards rounding
    at = lambda g: p1 + g * gap
    return Prediction(at(gamma), at(GAMMA_BAND[0]), at(GAMMA_BAND[1]), float(gamma), int(K_train))


MIN_SOLVED = 10
"""Fewer problems solved at least once than this and the verdict is INCONCLUSIVE: the gap is then
a mean over a handful of non-zero terms, where a percentile bootstrap over problems is too narrow
(the usual >= 10 events rule for a binomial proportion)."""


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
    uncertainty: dict | None = None
    min_lift: float = 0.05
    cost_per_pp_usd: float = 250_000

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
        d["uncertainty"] = self.uncertainty
        return d


def verdict(curve, gamma: float = 0.7, min_lift: float = 0.05, cost_per_pp_usd: float = 250_000, *,
            K_train: int | None = None, min_solved: int = MIN_SOLVED, n_boot: int = 1000, seed: int = 0,
            level: float = 0.95) -> Verdict:
    """GO when gamma * (pass@Kmax - pass@1) >= min_lift, else SKIP (the seed's rule) -- and, when
    the curve carries per-problem counts, INCONCLUSIVE when the screen is too weak to decide:
    fewer than ``min_solved`` problems solved at least once, or a ``level`` interval of
    gamma * gap (gap bootstrapped over problems, gamma across the band [0.6, 0.9]) containing
    ``min_lift``. ``decision`` is the three-way answer; ``uncertainty`` holds the interval, the
    seed rule's own answer (``rule_decision``), the reasons and what would make it decisive.

    Kmax is the curve's best k (the seed's rule) unless ``K_train`` is given: then the gap is
    taken at K_train, extrapolated per problem (plug-in) where K_train exceeds n."""
    d = _curve_dict(curve)
    if 1 not in d:
        raise ValueError(f"the curve needs pass@1 (ks = {sorted(d)})")
    gamma = gamma_value(gamma)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    counts = isinstance(curve, PassKCurve) and curve.n is not None and curve.c is not None
    kmax = max(d, key=lambda k: (d[k], k)) if K_train is None else int(K_train)
    if kmax < 1:
        raise ValueError(f"K_train must be a positive integer, got {K_train}")
    p1 = d[1]
    if counts:
        pk_i, extrapolated = per_problem_pass_at(curve.n, curve.c, kmax, curve.estimator)
        p_kmax = d[kmax] if kmax in d else float(pk_i.mean())
    elif kmax in d:
        p_kmax, pk_i, extrapolated = d[kmax], None, None
    else:
        raise ValueError(f"pass@{kmax} is not on the curve (ks = {sorted(d)}): add k = {kmax}, or pass the "
                         "curve from fp.pass_at_k_curve(n, c) so it can be computed from the counts")
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
    rule = "GO" if lift >= min_lift else "SKIP"
    decision, uncertainty = rule, None
    if counts:
        uncertainty = _uncertainty(curve, pk_i - curve.c / curve.n, extrapolated, kmax, gap, gamma, min_lift,
                                   min_solved, n_boot, seed, level)
        uncertainty["rule_decision"] = rule
        decision = uncertainty.pop("decision")
    return Verdict(p1, p_kmax, int(kmax), gap, p1 + lift, 100.0 * lift, 100.0 * lift * cost_per_pp_usd,
                   decision, float(gamma), band, intervals, uncertainty, float(min_lift), float(cost_per_pp_usd))


def _uncertainty(curve, gaps, extrapolated, K, gap, gamma, min_lift, min_solved, n_boot, seed, level) -> dict:
    from fastpass._intervals import bootstrap_means

    if int(n_boot) < 100:
        raise ValueError(f"n_boot must be >= 100 for a {level:.0%} interval, got {n_boot}")
    if not 0.5 <= level < 1.0:
        raise ValueError(f"level must lie in [0.5, 1), got {level}")
    problems, solved, n_min = int(curve.n.size), int((curve.c > 0).sum()), int(curve.n.min())
    boot = bootstrap_means(gaps, int(n_boot), seed)[:, 0]
    tail = (1.0 - level) / 2
    # the point estimate always lies inside (a percentile interval of a skewed mean can miss it)
    g_lo, g_hi = min(float(np.quantile(boot, tail)), gap), max(float(np.quantile(boot, 1 - tail)), gap)
    gam_lo, gam_hi = min(gamma, GAMMA_BAND[0]), max(gamma, GAMMA_BAND[1])
    lift_lo, lift_hi = gam_lo * g_lo, gam_hi * g_hi
    reasons, more, advice = [], [], []
    if solved < min_solved:
        reasons.append(f"only {solved} of {problems} problems were solved at least once (the verdict needs "
                       f">= {min_solved}): the gap rests on too few problems for its interval to hold")
        if solved:
            more.append(f"about {math.ceil(min_solved * problems / solved)} give {min_solved} solved ones at the "
                        f"rate seen here ({solved}/{problems})")
        advice.append(f"a larger n (now {n_min}): problems never solved in {n_min} samples may be solved "
                      f"in {4 * n_min}")
    if lift_lo < min_lift <= lift_hi:
        reasons.append(f"the {level:.0%} interval of gamma * gap over gamma in [{gam_lo:g}, {gam_hi:g}] is "
                       f"[{lift_lo:.3f}, {lift_hi:.3f}], which contains min_lift = {min_lift:g}")
        need, text = _problems_needed(boot, gap, problems, min_lift, gamma * gap >= min_lift, gam_lo, gam_hi, level)
        (more if need else advice).append(text)
    if more:
        advice.insert(0, f"more problems (now {problems}): " + "; ".join(more))
    if reasons and bool(np.any(extrapolated)):
        advice.append(f"n >= {K} measures pass@{K} instead of extrapolating it from c/n "
                      f"({int(np.sum(extrapolated))} problems have n < {K})")
    decision = "INCONCLUSIVE" if reasons else ("GO" if lift_lo >= min_lift else "SKIP")
    return {"decision": decision, "min_lift": float(min_lift), "level": float(level), "n_boot": int(n_boot),
            "gap_interval": [g_lo, g_hi], "gamma_range": [gam_lo, gam_hi], "lift_interval": [lift_lo, lift_hi],
            "problems": problems, "solved": solved, "min_solved": int(min_solved), "n": n_min,
            "pass@Kmax_extrapolated": int(np.sum(extrapolated)), "reasons": reasons, "to_decide": advice}


def _problems_needed(boot, gap, problems, min_lift, leaning_go, gam_lo, gam_hi, level) -> tuple[int | None, str]:
    """How many problems would move the interval's near end past min_lift if the gap holds (its
    width shrinks as 1/sqrt(problems)), or why no number of problems can."""
    z = NormalDist().inv_cdf(0.5 + level / 2)
    sd = float(np.std(boot))
    if leaning_go:
        margin, end, g = gap - min_lift / gam_lo, "lower", gam_lo
    else:
        margin, end, g = min_lift / gam_hi - gap, "upper", gam_hi
    if margin <= 0:
        return None, (f"no number of problems: at gamma = {g:g} the lift is {g * gap:.3f}, on the other side of "
                      f"min_lift = {min_lift:g}, so gamma decides; measure gamma for your RL setup")
    need = max(problems + 1, math.ceil(problems * (z * sd / margin) ** 2))
    return need, f"about {need} put the interval's {end} end past min_lift if the gap holds"
