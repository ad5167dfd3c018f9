import json
import subprocess
import sys

import pytest

import fastpass as fp
from fastpass.cli import main


def test_reproduces_seed_script_numbers():
    sim = fp.simulate()
    d = sim.to_dict()
    assert len(d["p1"]) == 200
    assert round(d["before"][1], 3) == 0.208
    assert round(d["before"][64], 3) == 0.875
    assert round(d["after"][1], 3) == 0.741


def test_same_stream_as_seed_code():
    import random

    random.seed(0)
    first = [random.gammavariate(0.6, 1.0), random.gammavariate(2.2, 1.0)]
    p0 = first[0] / (first[0] + first[1])
    assert fp.simulate().p1[0] == p0


def test_after_curve_flattens():
    sim = fp.simulate()
    lift_before = sim.before[64] / sim.before[1]
    lift_after = sim.after[64] / sim.after[1]
    assert lift_after < 1.5 < lift_before


def test_bad_arguments():
    with pytest.raises(ValueError, match="gamma"):
        fp.simulate(gamma=2)
    with pytest.raises(ValueError, match="alpha and beta"):
        fp.simulate(alpha=0)


def test_cli_tables_and_json(capsys, tmp_path):
    assert main(["simulate"]) == 0
    out = capsys.readouterr().out
    assert "pass@1 AFTER  RL = 0.741" in out
    assert "   64 |  0.875" in out
    assert "gap @ K= 64  = +0.667" in out
    png = tmp_path / "sim.png"
    assert main(["simulate", "--json", "--plot", str(png)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert round(data["after"]["1"], 3) == 0.741
    assert png.stat().st_size > 5000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_error_is_one_line_without_traceback():
    r = subprocess.run([sys.executable, "-m", "fastpass", "simulate", "--gamma", "3"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert "gamma must lie in [0, 1]" in r.stderr and "Traceback" not in r.stderr


def test_outputs_name_the_after_rl_model_and_why_screen_differs(capsys):
    assert main(["simulate"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # the tables wrap the prose
    assert "After-RL model: per problem p -> p + gamma * (pass@K_train - p)" in out
    assert "never solved in n samples stays at 0" in out and "screen plans with 0.7" in out
    d = fp.simulate().to_dict()
    assert "differs_from_screen" in d and "post_rl_model" in d
    from fastpass.cli import build_parser

    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["simulate"].format_help().split())
    assert "default 0.8, the seed script's value; fastpass screen plans with 0.7" in help_text


def test_screen_model_is_the_simulators_formula_on_estimated_rates():
    """Same formula: screened with many samples, the simulated problems' after-RL pass@1 from
    counts (the screen's per-problem model) converges to the simulator's; screened with n = 16,
    never-solved problems stay at 0, so the after-RL curve stays under the share ever solved
    while the simulator's rises above it -- the difference both outputs state."""
    import numpy as np

    from fastpass.screen.report import post_rl_curve
    from fastpass.verdict import post_rl_rates

    sim = fp.simulate()
    p = np.array(sim.p1)
    rng = np.random.default_rng(0)
    n = 4096  # >= K_train: the unbiased per-problem pass@64, no extrapolation
    c = rng.binomial(n, p)
    rates = post_rl_rates(fp.pass_at_k_curve(np.full(p.size, n), c, ks=[1, 64]), 64, sim.gamma)
    # per-problem sd of c/n is at most 0.008 at n = 4096; over 200 problems the mean is far tighter
    assert np.mean(rates.value) == pytest.approx(sim.after[1], abs=0.01)
    # per problem too, up to the noise of pass@64 where it is steep in p (p ~ 0.02)
    assert np.median(np.abs(rates.value - np.array(sim.p1_after))) < 0.01

    c16 = rng.binomial(16, p)
    small = post_rl_rates(fp.pass_at_k_curve(np.full(p.size, 16), c16, ks=[1, 16]), 64, sim.gamma)
    solved = np.mean(c16 > 0)
    assert np.all(small.value[c16 == 0] == 0)
    assert post_rl_curve(small.value, [256])[0] <= solved + 1e-12 < sim.after[256]
