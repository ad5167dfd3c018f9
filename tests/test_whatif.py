"""The what-if page without a browser: one self-contained file, what it embeds (fp.simulate's problems,
a run's counts, fp.verdict's own bootstrap weights), escaping, and `fastpass whatif`. The page's
behaviour in a real browser is tests/test_whatif_browser.py."""
from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

import fastpass as fp
from fastpass._intervals import bootstrap_means
from fastpass.cli import main
from fastpass.screen import ScreenReport
from fastpass.whatif import MAX_EMBEDDED_WEIGHTS, PRESETS, whatif_html


def _data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="fp-data">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


def _report(c, n=16, model="m"):
    return ScreenReport.from_counts([f"p{i}" for i in range(len(c))], [n] * len(c), c, ks=[1, n],
                                    config={"model": model})


def test_one_file_no_network():
    html = whatif_html(_report([3, 0, 9, 16]))
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<script src" not in html and "<link" not in html and "@import" not in html and "url(" not in html
    assert "fetch(" not in html and "XMLHttpRequest" not in html
    assert html.count("<script") == 2  # the data and the inline program


def test_embeds_the_simulator_and_the_run():
    d = _data(whatif_html(_report([3, 0, 9, 16])))
    assert d["sets"]["simulator"]["p"] == fp.simulate(ks=(1,)).p1  # the seed's 200 problems, exactly
    assert d["sets"]["run"]["n"] == [16] * 4 and d["sets"]["run"]["c"] == [3, 0, 9, 16]
    assert d["start"] == "This run" and [p["name"] for p in d["presets"]][-1] == "This run"
    run = next(p for p in d["presets"] if p["name"] == "This run")
    assert (run["K"], run["gamma"]) == (64, 0.7)
    assert {p["name"] for p in PRESETS} >= {"Chapter figure", "Weak 7B base", "Hopeless eval", "Seed simulator"}
    plain = _data(whatif_html())
    assert "run" not in plain["sets"] and plain["start"] == "Chapter figure"


def test_embedded_resampling_weights_are_fp_verdicts_own():
    c = [3, 0, 9, 16, 1, 5, 7]
    d = _data(whatif_html(_report(c)))
    boot = d["sets"]["run"]["boot"]
    w = np.frombuffer(base64.b64decode(boot["weights_b64"]), dtype=np.uint8).reshape(boot["n_boot"], len(c))
    assert (w.sum(axis=1) == len(c)).all()
    gaps = np.random.default_rng(0).random(len(c))  # any per-problem values: the draws do not depend on them
    np.testing.assert_allclose(w @ gaps / len(c), bootstrap_means(gaps, boot["n_boot"], 0)[:, 0], rtol=0, atol=1e-15)
    v = fp.verdict(fp.pass_at_k_curve([16] * len(c), c), K_train=64)
    assert (boot["n_boot"], boot["level"], boot["min_solved"]) == (
        v.uncertainty["n_boot"], v.uncertainty["level"], v.uncertainty["min_solved"])


def test_large_runs_do_not_embed_weights():
    P = MAX_EMBEDDED_WEIGHTS // 1000 + 1
    d = _data(whatif_html(_report(list(np.arange(P) % 17))))
    assert "weights_b64" not in d["sets"]["run"]["boot"]


def test_ids_and_names_cannot_break_out_of_the_page():
    html = whatif_html(_report([1, 2], model='</script><script>alert(1)</script> & "x"'))
    assert "<script>alert(1)" not in html
    assert html.count("</script>") == 2
    assert _data(html)["presets"][-1]["note"].startswith('</script><script>alert(1)</script> & "x"')


def test_bad_reports_are_one_clear_error(tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a fastpass report.json"):
        whatif_html(str(bad))
    bad.write_text(json.dumps({"config": {}}))
    with pytest.raises(ValueError, match="per_problem"):
        whatif_html(str(bad))
    bad.write_text(json.dumps({"per_problem": [{"id": "a", "n": 4, "c": 5}]}))
    with pytest.raises(ValueError, match="c = 5, n = 4"):
        whatif_html(str(bad))
    with pytest.raises(TypeError, match="report must be"):
        whatif_html(42)


def test_cli_whatif(tmp_path, capsys):
    out = tmp_path / "w.html"
    assert main(["whatif", "--out", str(out)]) == 0
    assert "Chapter figure" in out.read_text() and "wrote" in capsys.readouterr().out
    rep_dir = tmp_path / "run"
    _report([3, 0, 9, 16]).save(str(rep_dir))
    out2 = tmp_path / "w2.html"
    assert main(["whatif", "--report", str(rep_dir / "report.json"), "--out", str(out2), "--min-lift", "0.1"]) == 0
    d = _data(out2.read_text())
    assert d["sets"]["run"]["c"] == [3, 0, 9, 16] and d["defaults"]["min_lift"] == 0.1
    capsys.readouterr()
    assert main(["whatif", "--report", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no report at" in err


def test_a_report_json_with_only_counts_is_enough(tmp_path):
    """Older or hand-written report.json files: per_problem counts alone give the run's page, with
    fp.verdict's default bootstrap settings and the default reach."""
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"per_problem": [{"id": "a", "n": 8, "c": 2}, {"id": "b", "n": 8, "c": 0}]}))
    d = _data(whatif_html(str(path)))
    assert d["sets"]["run"]["c"] == [2, 0] and d["defaults"]["reach"] == [0.05, 0.4]
    run = next(p for p in d["presets"] if p["name"] == "This run")
    assert (run["K"], run["gamma"]) == (64, 0.7)
    assert d["sets"]["run"]["boot"]["n_boot"] == 1000 and d["sets"]["run"]["boot"]["min_solved"] == 10
