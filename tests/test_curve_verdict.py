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


# ---- the verdict's uncertainty: GO / SKIP / INCONCLUSIVE ---------------------------------------
SEED_KEYS = ("pass@1(base)", "pass@Kmax(base)", "elicitation_gap", "expected_pass@1", "expected_lift_pp",
             "estimated_cost_USD", "decision")


def _gsm8k_case():
    """The issue's GSM8K screen: 40 problems, n = 16, 4 ever solved, pass@1 0.009, pass@16 0.100."""
    c = np.zeros(40, dtype=int)
    c[:4] = [2, 2, 1, 1]
    return fp.pass_at_k_curve(np.full(40, 16), c, ks=[1, 4, 16], ci="bootstrap")


@pytest.mark.parametrize("K_train", [None, 64])
def test_gsm8k_case_is_inconclusive_with_its_reasons(K_train):
    curve = _gsm8k_case()
    assert curve[1] == pytest.approx(0.009, abs=5e-4) and curve[16] == pytest.approx(0.100)
    d = fp.verdict(curve, K_train=K_train).to_dict()
    u = d["uncertainty"]
    assert d["decision"] == "INCONCLUSIVE"
    assert u["rule_decision"] == "GO"  # the seed's rule on the point estimate, which the issue saw
    assert all(k in d for k in SEED_KEYS)
    assert (u["problems"], u["solved"], u["min_solved"], u["n"]) == (40, 4, 10, 16)
    assert any("only 4 of 40 problems" in r for r in u["reasons"])
    lo, hi = u["lift_interval"]
    assert lo < 0.05 <= hi and any("contains min_lift = 0.05" in r for r in u["reasons"])
    advice = " ".join(u["to_decide"])
    assert "more problems" in advice and "about 100 give 10 solved ones" in advice  # 10 * 40 / 4
    assert "a larger n (now 16)" in advice
    assert ("n >= 64 measures pass@64" in advice) == (K_train == 64)


def test_gap_interval_matches_an_independent_bootstrap():
    rng = np.random.default_rng(1)
    n, c = np.full(120, 32), rng.binomial(32, rng.beta(0.5, 2.0, 120))
    u = fp.verdict(fp.pass_at_k_curve(n, c), n_boot=4000, seed=3).uncertainty
    g = fp.pass_at_k(n, c, 32) - c / n  # per-problem gap at Kmax = 32
    boot = np.array([rng.choice(g, g.size).mean() for _ in range(4000)])
    want = np.quantile(boot, [0.025, 0.975])
    # two independent 4000-draw bootstraps: their 2.5% quantiles differ by ~0.1 sd of the mean
    assert u["gap_interval"] == pytest.approx(want, abs=0.35 * boot.std())
    assert u["lift_interval"] == pytest.approx([0.6 * u["gap_interval"][0], 0.9 * u["gap_interval"][1]])


def test_gap_interval_coverage_near_95_percent():
    """Screens drawn from a known population: the gap interval covers the population's true gap."""
    alpha, beta, n, problems, runs = 0.6, 2.2, 16, 150, 200
    truth = _beta_population_truth(alpha, beta, n) - alpha / (alpha + beta)
    rng = np.random.default_rng(7)
    hits = 0
    for run in range(runs):
        c = rng.binomial(n, rng.beta(alpha, beta, problems))
        lo, hi = fp.verdict(fp.pass_at_k_curve(np.full(problems, n), c), n_boot=400, seed=run).uncertainty["gap_interval"]
        hits += lo <= truth <= hi
    assert 0.88 <= hits / runs <= 0.99, hits / runs


def test_decisive_go_and_skip_on_known_counts():
    # every problem solved once in 16: each gap is 15/16, no spread, so the interval is a point
    go = fp.verdict(fp.pass_at_k_curve(np.full(10, 16), np.ones(10, dtype=int)))
    assert go.decision == "GO" and go.uncertainty["reasons"] == [] and go.uncertainty["to_decide"] == []
    assert go.uncertainty["gap_interval"] == pytest.approx([15 / 16, 15 / 16])
    # half always right, half never: no gap at all, the interval is [0, 0]
    c = np.array([16] * 50 + [0] * 50)
    skip = fp.verdict(fp.pass_at_k_curve(np.full(100, 16), c))
    assert skip.decision == "SKIP" and skip.uncertainty["lift_interval"] == [0.0, 0.0]
    assert skip.uncertainty["rule_decision"] == "SKIP"


def test_min_solved_is_a_sharp_threshold():
    c = np.array([1] * 9 + [0])
    nine = fp.verdict(fp.pass_at_k_curve(np.full(10, 16), c))
    assert nine.decision == "INCONCLUSIVE" and len(nine.uncertainty["reasons"]) == 1
    assert nine.uncertainty["lift_interval"][0] >= 0.05  # only the solved count holds it back
    ten = fp.verdict(fp.pass_at_k_curve(np.full(11, 16), np.append(c, 1)))
    assert ten.decision == "GO"
    assert fp.verdict(fp.pass_at_k_curve(np.full(10, 16), c), min_solved=9).decision == "GO"


def test_decisive_verdicts_agree_with_the_seed_rule():
    rng = np.random.default_rng(11)
    seen = set()
    for _ in range(60):
        problems = int(rng.integers(5, 80))
        c = rng.binomial(16, rng.beta(rng.uniform(0.1, 30), rng.uniform(0.5, 5), problems))
        v = fp.verdict(fp.pass_at_k_curve(np.full(problems, 16), c), min_lift=float(rng.uniform(0.02, 0.3)))
        u = v.uncertainty
        lo, hi = u["lift_interval"]
        assert lo <= 0.7 * v.gap <= hi
        if v.decision != "INCONCLUSIVE":
            assert v.decision == u["rule_decision"] and not u["reasons"]
        else:
            assert u["reasons"] and u["to_decide"]
        seen.add(v.decision)
    assert seen == {"GO", "SKIP", "INCONCLUSIVE"}


@pytest.mark.parametrize("min_lift, end", [(0.2, "lower"), (0.43, "upper"), (0.35, None)])
def test_advised_problem_count_makes_it_decisive(min_lift, end):
    """The advice 'about N problems' holds: the same problems repeated to N (the gap unchanged,
    its interval narrowed) give a decisive verdict, and the original count does not. When the
    gamma band alone straddles min_lift, the advice says that no number of problems helps."""
    import re

    rng = np.random.default_rng(5)
    c = rng.binomial(16, rng.beta(0.3, 3, 60))
    at = lambda reps: fp.verdict(fp.pass_at_k_curve(np.full(60 * reps, 16), np.tile(c, reps)), min_lift=min_lift)
    v = at(1)
    assert v.decision == "INCONCLUSIVE" and v.uncertainty["solved"] >= 10
    text = " ".join(v.uncertainty["to_decide"])
    if end is None:  # 0.6 * gap < 0.35 < 0.9 * gap
        assert 0.6 * v.gap < min_lift < 0.9 * v.gap
        assert "no number of problems" in text and "gamma decides" in text
        assert at(60).decision == "INCONCLUSIVE"
        return
    need = int(re.search(rf"about (\d+) put the interval's {end} end", text).group(1))
    assert need > 60
    # "about": a normal approximation of the percentile interval; 10% more problems settle it
    assert at(int(np.ceil(1.1 * need / 60))).decision == ("GO" if end == "lower" else "SKIP")


def test_verdict_at_K_train_extrapolates_beyond_n_and_matches_per_problem_rates():
    from fastpass.verdict import post_rl_rates

    rng = np.random.default_rng(2)
    n, c = np.full(50, 16), rng.binomial(16, rng.beta(0.5, 2, 50))
    curve = fp.pass_at_k_curve(n, c, ks=[1, 4, 16])
    v = fp.verdict(curve, K_train=64)
    want_k = np.mean(1 - (1 - c / n) ** 64)  # plug-in: no unbiased pass@64 from 16 samples
    assert v.kmax == 64 and v.pass_kmax == pytest.approx(want_k, abs=1e-12)
    assert v.uncertainty["pass@Kmax_extrapolated"] == 50
    rates = post_rl_rates(curve, 64, 0.7)
    assert np.mean(rates.value) == pytest.approx(v.expected_pass1, abs=1e-12)
    assert np.mean(rates.low) == pytest.approx(v.gamma_band["low"]["expected_pass@1"], abs=1e-12)
    # K_train within n: the unbiased value, exactly the curve's
    v16 = fp.verdict(curve, K_train=16)
    assert v16.pass_kmax == curve[16] and v16.uncertainty["pass@Kmax_extrapolated"] == 0
    assert fp.verdict(curve, K_train=4).pass_kmax == curve[4]
    with pytest.raises(ValueError, match="pass@64 is not on the curve"):
        fp.verdict({1: 0.1, 16: 0.3}, K_train=64)


def test_dict_curves_keep_the_seed_rule_and_say_there_is_no_interval():
    d = fp.verdict({1: 0.155, 64: 0.700}).to_dict()
    assert d["decision"] == "GO" and d["uncertainty"] is None
    with pytest.raises(ValueError, match="n_boot"):
        fp.verdict(_gsm8k_case(), n_boot=10)
