"""gamma calibration: a known gamma recovered from synthetic before/after runs inside its interval
(with K_train <= n and with K_train > n), interval coverage over repeated synthetic studies, the
seed chapter's reference rows, leave-one-out predictions, the Beta prior behind the K_train > n gap,
reading PAIRS.jsonl, the calibration file, and its use by fp.verdict and `fastpass calibrate`."""
from __future__ import annotations

import json

import numpy as np
import pytest

import fastpass as fp
from fastpass.calibration import calibrate, example_runs, load_calibration
from fastpass.calibration_data import EXAMPLE_ROWS, Run, expected_gap, fit_beta_prior, load_pairs
from fastpass.cli import main


def synthetic_run(rng, gamma, n=64, K=64, P=200, n_after=64, a=0.6, b=2.2, name="s"):
    """True rates p ~ Beta(a, b); base counts c ~ Bin(n, p); RL moves p to p + gamma*(1-(1-p)^K - p);
    post-RL counts ~ Bin(n_after, that)."""
    p = rng.beta(a, b, P)
    q = p + gamma * (-np.expm1(K * np.log1p(-p)) - p)
    return {"name": name, "K_train": K, "counts": {"n": [n] * P, "c": rng.binomial(n, p).tolist()},
            "post_rl": {"n": [n_after] * P, "c": rng.binomial(n_after, q).tolist()}}


def _runs(rows, tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return load_pairs(path)


@pytest.mark.parametrize("n", [128, 16], ids=["K<=n unbiased gap", "K>n Beta-prior gap"])
def test_recovers_a_known_gamma_inside_its_interval(tmp_path, n):
    rng = np.random.default_rng(1)
    runs = _runs([synthetic_run(rng, 0.75, n=n, name=f"run{i}") for i in range(3)], tmp_path)
    cal = calibrate(runs, n_boot=1000)
    assert cal.interval[0] <= 0.75 <= cal.interval[1]
    assert abs(cal.gamma - 0.75) < 0.03
    assert cal.interval[1] - cal.interval[0] < 0.1  # informative, not a trivially wide interval
    assert cal.runs == 3 and cal.problems == 600
    assert all(r["gap_method"] == ("unbiased" if n >= 64 else "beta-prior") for r in cal.per_run)


def test_interval_coverage_over_repeated_studies(tmp_path):
    """A 95% interval should cover the truth in most studies: 30 studies of 2 runs each, gammas
    drawn anew; fail only if coverage is implausibly low for a 95% interval (< 24/30)."""
    rng = np.random.default_rng(2)
    hits = 0
    for s in range(30):
        g = rng.uniform(0.5, 0.95)
        runs = [Run(f"r{i}", "per_problem", 64, n=np.full(150, 64), c=None) for i in range(2)]
        for r in runs:
            d = synthetic_run(rng, g, P=150)
            r.c = np.array(d["counts"]["c"])
            r.y = np.array(d["post_rl"]["c"]) / 64
        cal = calibrate(runs, n_boot=400, seed=s)
        hits += cal.interval[0] <= g <= cal.interval[1]
    assert hits >= 24, hits


def test_per_problem_least_squares_would_be_biased_the_pooled_fit_is_not():
    """Why the fit pools: regressing each problem's lift on its own noisy gap attenuates gamma."""
    rng = np.random.default_rng(3)
    pooled, per_problem = [], []
    for _ in range(60):
        d = synthetic_run(rng, 0.75, n=64)
        run = Run("s", "per_problem", 64, n=np.array(d["counts"]["n"]), c=np.array(d["counts"]["c"]),
                  y=np.array(d["post_rl"]["c"]) / 64)
        pooled.append(calibrate([run], n_boot=100).gamma_raw)
        lift, gap = run.y - run.p1, run.g
        per_problem.append(float(gap @ lift / (gap @ gap)))
    se = np.std(pooled) / np.sqrt(len(pooled))
    assert abs(np.mean(pooled) - 0.75) < 3 * se + 0.005
    assert np.mean(per_problem) < 0.75 - 0.02  # the attenuation the pooled fit avoids


def test_chapter_reference_rows():
    cal = calibrate(example_runs(), n_boot=2000)
    lift = sum(post - p1 for _, p1, _, post in EXAMPLE_ROWS)
    gap = sum(pk - p1 for _, p1, pk, _ in EXAMPLE_ROWS)
    assert cal.gamma_raw == pytest.approx(lift / gap, abs=1e-15) and cal.gamma == pytest.approx(0.8936, abs=1e-4)
    assert cal.runs == 4 and cal.problems == 0
    assert cal.interval[0] < cal.gamma < cal.interval[1] <= 1.0
    rows = {r["name"]: r for r in cal.per_run}
    # the chapter's table, column "predicted pass@1 (gamma = 0.7)"
    assert [round(rows[name]["predicted_at_0.7"], 3) for name, *_ in EXAMPLE_ROWS] == [0.536, 0.823, 0.175, 0.941]
    aime = rows["DeepSeek-V3-Base + AIME-2024"]
    assert aime["gamma_run"] == pytest.approx((0.71 - 0.155) / (0.700 - 0.155), abs=1e-12)
    others = [r for r in EXAMPLE_ROWS if r[0] != aime["name"]]
    g_without = sum(post - p1 for _, p1, _, post in others) / sum(pk - p1 for _, p1, pk, _ in others)
    assert aime["predicted_without"] == pytest.approx(0.155 + g_without * 0.545, abs=1e-12)
    text = cal.to_text()
    assert "rests on 4 runs" in text and "0.536" in text


def test_beta_prior_and_expected_gap():
    rng = np.random.default_rng(4)
    p = rng.beta(0.6, 2.2, 4000)
    a, b = fit_beta_prior(np.full(4000, 16), rng.binomial(16, p))
    assert a == pytest.approx(0.6, rel=0.15) and b == pytest.approx(2.2, rel=0.15)
    # E[1 - (1-p)^K - p | c of n] against a Monte Carlo of the posterior Beta(a + c, b + n - c)
    draws = np.random.default_rng(5).beta(0.6 + 1, 2.2 + 15, 400_000)
    mc = np.mean(-np.expm1(64 * np.log1p(-draws)) - draws)
    assert expected_gap([16], [1], 64, (0.6, 2.2))[0] == pytest.approx(mc, abs=2e-3)
    # a never-solved problem still has a gap when K > n (the plug-in gives it none)
    assert expected_gap([16], [0], 64, (0.6, 2.2))[0] > 0.05


def test_clipping_and_notes():
    hi = Run("up", "aggregate", 64, pass1=0.1, pass_k=0.3, measured=0.45)
    cal = calibrate([hi])
    assert cal.gamma == 1.0 and cal.gamma_raw == pytest.approx(1.75) and cal.interval is None
    assert any("> 1" in n for n in cal.notes) and any("no interval" in n for n in cal.notes)
    down = Run("down", "aggregate", 64, pass1=0.3, pass_k=0.5, measured=0.25)
    assert calibrate([down]).gamma == 0.0
    with pytest.raises(ValueError, match="no elicitation gap"):
        calibrate([Run("flat", "aggregate", 64, pass1=0.3, pass_k=0.3, measured=0.4)])


def test_pairs_formats_and_id_matching(tmp_path):
    rep = fp.ScreenReport.from_counts(["a", "b", "c"], [16] * 3, [2, 8, 0], ks=[1, 16])
    rep.save(str(tmp_path / "screen"))
    rows = [
        {"name": "from report", "report": "screen/report.json", "post_rl": [{"id": "c", "n": 8, "c": 0},
                                                                       {"id": "a", "n": 8, "c": 6},
                                                                       {"id": "b", "n": 8, "c": 8}]},
        {"counts": {"n": [32, 32], "c": [4, 20]}, "K_train": 16, "post_rl": {"p1": [0.5, 0.9]}},
        {"counts": [{"n": 32, "c": 4}, {"n": 32, "c": 20}], "post_rl_pass1": 0.7},
        {"pass@1": 0.2, "pass@K": 0.5, "K_train": 32, "post_rl_pass1": 0.4},
    ]
    runs = _runs(rows, tmp_path)
    assert [r.kind for r in runs] == ["per_problem", "per_problem", "counts", "aggregate"]
    assert runs[0].y.tolist() == [0.75, 1.0, 0.0]  # reordered to the report's ids a, b, c
    assert runs[0].K_train == 64 and runs[1].K_train == 16 and runs[3].K_train == 32
    cal = calibrate(runs, n_boot=200)
    assert cal.runs == 4 and cal.problems == 7
    assert cal.per_run[1]["gap_method"] == "unbiased" and cal.per_run[0]["gap_method"] == "beta-prior"
    assert cal.per_run[1]["pass@1"] == pytest.approx(12 / 32)
    assert cal.per_run[1]["gap"] == pytest.approx(np.mean(fp.pass_at_k([32, 32], [4, 20], 16)) - 12 / 32, abs=1e-15)
    assert cal.bands is not None and cal.bands["wall"]["problems"] == 1


@pytest.mark.parametrize("line, match", [
    ("{nope", ":1: not valid JSON"),
    ('{"pass@1": 0.2, "pass@K": 0.5}', "post_rl_pass1"),
    ('{"counts": {"n": [8], "c": [9]}, "post_rl_pass1": 0.5}', "c = 9, n = 8"),
    ('{"counts": {"n": [8, 8], "c": [1, 2]}, "post_rl": {"p1": [0.5]}}', "1 problems, the base screen 2"),
    ('{"counts": {"n": [8], "c": [1], "ids": ["x"]}, "post_rl": {"p1": [0.5], "ids": ["y"]}}', "no result for"),
    ('{"pass@1": 0.5, "pass@K": 0.2, "post_rl_pass1": 0.5}', "below pass@1"),
    ('{"pass@1": 0.2, "pass@K": 0.5, "post_rl_pass1": 1.5}', "post_rl_pass1 must be"),
    ('{"pass@1": 0.2, "pass@K": 0.5, "post_rl_pass1": 0.4, "K_train": 0}', "K_train"),
    ('{"report": "missing.json", "post_rl_pass1": 0.4}', "cannot read the report"),
    ('{"counts": {"n": [8], "c": [4]}, "post_rl_pass1": 0.9, "post_rl": {"p1": [0.2]}}', "average 0.2000"),
    ('{"something": 1}', "give the base screen"),
])
def test_bad_pairs_lines_name_the_line_and_the_fix(tmp_path, line, match):
    path = tmp_path / "pairs.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ValueError, match=match):
        calibrate(load_pairs(path))


def test_calibration_file_round_trip_and_use_in_verdict(tmp_path):
    cal = calibrate(example_runs())
    path = cal.save(tmp_path / "cal.json")
    back = load_calibration(path)
    assert (back.gamma, back.interval, back.runs) == (cal.gamma, cal.interval, 4)
    curve = fp.pass_at_k_curve([16] * 5, [1, 3, 8, 0, 12], ks=[1, 16])
    v = fp.verdict(curve, gamma=back)
    assert v.gamma == cal.gamma and v.to_dict() == fp.verdict(curve, gamma=cal.gamma).to_dict()
    assert fp.predict_post_rl(curve, K_train=16, gamma=back).value == pytest.approx(
        fp.predict_post_rl(curve, K_train=16, gamma=cal.gamma).value, abs=0)
    (tmp_path / "bad.json").write_text('{"gamma": 0.7}')
    with pytest.raises(ValueError, match="not a fastpass calibration"):
        load_calibration(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="fastpass calibrate"):
        load_calibration(tmp_path / "missing.json")


def test_cli_calibrate(tmp_path, capsys):
    out = tmp_path / "cal.json"
    assert main(["calibrate", "--example", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "gamma = 0.894" in text and "The fit rests on 4 runs" in text and "--gamma-from" in text
    assert load_calibration(out).gamma == pytest.approx(0.8936, abs=1e-4)
    rng = np.random.default_rng(6)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(synthetic_run(rng, 0.6, name=f"r{i}")) + "\n" for i in range(2)))
    assert main(["calibrate", str(pairs), "--out", str(out), "--json", "--n-boot", "300"]) == 0
    d = json.loads(capsys.readouterr().out)
    api = calibrate(load_pairs(pairs), n_boot=300)  # the command is the API, written out
    assert d["runs"] == 2 and d["problems"] == 400
    assert (d["gamma"], d["interval"]) == (api.gamma, list(api.interval))
    assert load_calibration(out).to_dict()["per_run"] == json.loads(json.dumps(api.per_run))
    assert main(["calibrate"]) == 2 and "PAIRS.jsonl or --example" in capsys.readouterr().err
    assert main(["calibrate", str(tmp_path / "none.jsonl")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
