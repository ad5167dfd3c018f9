"""Curves, intervals (with a coverage check), elicitation gap, post-RL prediction, verdict."""
from math import exp, lgamma

import numpy as np
import pytest

import fastpass as fp


def test_default_ks_are_powers_of_two_plus_min_n():
    curve = fp.pass_at_k_curve([100, 120], [10, 60])
    assert curve.ks.tolist() == [1, 2, 4, 8, 16, 32, 64, 100]
    assert fp.pass_at_k_curve([64], [3]).ks.tolist() == [1, 2, 4, 8, 16, 32, 64]


def test_curve_values_are_problem_means_for_every_k():
    rng = np.random.default_rng(0)
    n = np.full(50, 32)
    c = rng.integers(0, 33, size=50)
    ks = list(range(1, 33))
    curve = fp.pass_at_k_curve(n, c, ks=ks)
    for k in ks:
        assert curve[k] == pytest.approx(fp.pass_at_k(n, c, k).mean(), abs=1e-14)
    assert list(curve.to_dict()) == ks
    assert np.all(np.diff(curve.values) >= -1e-15)  # pass@k never falls with k
    with pytest.raises(KeyError, match="pass@33"):
        curve[33]


def _beta_population_truth(alpha, beta, k):
    """E_p[1 - (1-p)^k] for p ~ Beta(alpha, beta) = 1 - B(alpha, beta+k) / B(alpha, beta)."""
    lb = lambda a, b: lgamma(a) + lgamma(b) - lgamma(a + b)
    return 1.0 - exp(lb(alpha, beta + k) - lb(alpha, beta))


@pytest.mark.parametrize("ci", ["bootstrap"])
def test_interval_coverage_near_95_percent(ci):
    alpha, beta, n, problems, runs = 0.6, 2.2, 32, 150, 200
    ks = [1, 4, 16]
    truth = np.array([_beta_population_truth(alpha, beta, k) for k in ks])
    rng = np.random.default_rng(123)
    hits = np.zeros(len(ks))
    for run in range(runs):
        p = rng.beta(alpha, beta, size=problems)
        c = rng.binomial(n, p)
        curve = fp.pass_at_k_curve(np.full(problems, n), c, ks=ks, ci=ci, n_boot=400, seed=run)
        hits += (curve.lo <= truth) & (truth <= curve.hi)
    coverage = hits / runs
    # 200 runs at a true 95% give a binomial sd of 1.5 points; percentile bootstraps run a
    # little narrow at 150 problems. Accept [0.88, 0.99].
    assert np.all((coverage >= 0.88) & (coverage <= 0.99)), coverage


def test_beta_interval_brackets_estimate_and_is_seeded():
    n, c = np.full(40, 64), np.arange(40)
    a = fp.pass_at_k_curve(n, c, ks=[1, 8, 64], ci="beta", seed=7)
    b = fp.pass_at_k_curve(n, c, ks=[1, 8, 64], ci="beta", seed=7)
    np.testing.assert_array_equal(a.lo, b.lo)
    assert np.all(a.lo < a.values) and np.all(a.values < a.hi)
    assert np.all(a.hi - a.lo < 0.2)
    with pytest.raises(ValueError, match="ci must be"):
        fp.pass_at_k_curve(n, c, ci="wald")


def test_elicitation_gap_and_prediction_aggregate():
    curve = {1: 0.2, 4: 0.4, 64: 0.8}
    assert fp.elicitation_gap(curve, 64) == pytest.approx(0.6)
    pred = fp.predict_post_rl(curve, K_train=64, gamma=0.7)
    assert float(pred) == pytest.approx(0.2 + 0.7 * 0.6)
    assert pred.low == pytest.approx(0.2 + 0.6 * 0.6) and pred.high == pytest.approx(0.2 + 0.9 * 0.6)
    with pytest.raises(ValueError, match="pass@16 is not on the curve"):
        fp.predict_post_rl(curve, K_train=16)


def test_prediction_from_curve_computes_missing_k_from_counts():
    curve = fp.pass_at_k_curve([100, 100], [5, 50], ks=[1, 4])
    pred = fp.predict_post_rl(curve, K_train=64, gamma=0.8)
    p64 = fp.pass_at_k([100, 100], [5, 50], 64).mean()
    assert float(pred) == pytest.approx(curve[1] + 0.8 * (p64 - curve[1]), abs=1e-14)


def test_prediction_per_problem_matches_seed_formula():
    p1 = np.array([0.10, 0.001, 0.0, 1.0])
    pred = fp.predict_post_rl(p1, K_train=64, gamma=0.8)
    want = p1 + 0.8 * (1 - (1 - p1) ** 64 - p1)
    np.testing.assert_allclose(pred.value, want, atol=1e-14)
    assert pred.value[0] == pytest.approx(0.82, abs=0.005)  # the seed's worked example
    assert pred.value[1] == pytest.approx(0.05, abs=0.005)


def test_seed_deepseek_decision():
    v = fp.verdict({1: 0.155, 64: 0.700})
    d = v.to_dict()
    assert d["decision"] == "GO"
    assert d["expected_pass@1"] == pytest.approx(0.5365)
    assert d["estimated_cost_USD"] == pytest.approx(9.5375e6)
    for key in ("pass@1(base)", "pass@Kmax(base)", "elicitation_gap", "expected_pass@1",
                "expected_lift_pp", "estimated_cost_USD", "decision"):
        assert key in d
    assert d["gamma_band"]["low"]["gamma"] == 0.6 and d["gamma_band"]["high"]["gamma"] == 0.9


def test_seed_7b_example_is_skip_and_threshold_is_inclusive():
    d = fp.verdict({1: 0.022, 4: 0.071, 16: 0.158, 64: 0.241}, gamma=0.15).to_dict()
    assert d["decision"] == "SKIP"
    # lift = gamma * gap exactly at min_lift counts as GO (>=), as in the seed.
    assert fp.verdict({1: 0.0, 8: 0.5}, gamma=0.1, min_lift=0.05).decision == "GO"
    assert fp.verdict({1: 0.0, 8: 0.5}, gamma=0.09, min_lift=0.05).decision == "SKIP"


def test_verdict_carries_intervals_from_curve():
    curve = fp.pass_at_k_curve(np.full(30, 16), np.arange(30) % 17, ci="bootstrap")
    d = fp.verdict(curve).to_dict()
    lo, hi = d["intervals"]["pass@1(base)"]
    assert lo <= d["pass@1(base)"] <= hi


def test_verdict_bad_input():
    with pytest.raises(ValueError, match="needs pass@1"):
        fp.verdict({4: 0.5})
    with pytest.raises(TypeError, match="PassKCurve"):
        fp.verdict([0.1, 0.2])
    with pytest.raises(ValueError, match="gamma"):
        fp.verdict({1: 0.1, 4: 0.3}, gamma=1.5)
