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
