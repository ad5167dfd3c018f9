"""The what-if page in a real headless Chromium (Chrome DevTools Protocol, tests/cdp_browser.py): load
it, press presets and move sliders with real mouse and keyboard events, read the numbers the page
shows and compare them with fp.predict_post_rl / fp.simulate / fp.verdict for the same inputs.
Screenshots go to the test's tmp_path. Skips, saying why, when no Chromium is installed (Debian:
apt-get install -y chromium)."""
from __future__ import annotations

import numpy as np
import pytest

import fastpass as fp
from cdp_browser import Browser, find_chromium
from fastpass.fate import fate_table
from fastpass.screen import ScreenReport
from fastpass.whatif import write_whatif

pytestmark = pytest.mark.skipif(
    find_chromium() is None,
    reason="no Chromium found (apt-get install -y chromium, or FASTPASS_CHROMIUM=/path/to/chrome): the what-if "
           "page's browser test did not run")

NUM = ["p1-label", "K-label", "gamma-label", "out-pass1", "out-passK", "out-gap", "out-lift", "out-after",
       "out-afterK", "out-lift-pp", "out-cost"]
TOL = 1e-12  # JS and numpy both compute in float64; only the order of sums may differ


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Browser.launch(tmp_path_factory.mktemp("chromium"))
    yield b
    b.close()


def read(b) -> dict:
    """Every output of the page: full-precision values (data-value) and the text shown."""
    got = b.eval("(() => { const o = {}; for (const e of document.querySelectorAll('[data-value]')) "
                 "o[e.id || e.closest('tr').dataset.band] = [e.getAttribute('data-value'), e.textContent]; "
                 "return o; })()")
    out = {k: float(v[0]) for k, v in got.items() if k in NUM}
    out["text"] = {k: v[1] for k, v in got.items()}
    out["verdict"] = got["out-verdict"][0]
    out["band"] = [float(x) for x in got["out-after-band"][0].split(",")]
    out["rule"] = got["out-why"][0]
    out["why"] = got["out-why"][1]
    out["fate"] = {k: float(v[0]) for k, v in got.items() if k in ("within reach", "hard", "easy", "wall")}
    out["mode"] = b.eval("document.getElementById('mode').value")
    return out


def check_single(r, p1, K, gamma):
    """One p1 for every problem: fp.predict_post_rl's per-problem form and fp.verdict on {1, K}."""
    assert (r["p1-label"], r["K-label"], r["gamma-label"]) == (pytest.approx(p1, abs=0), K, pytest.approx(gamma, abs=0))
    pred = fp.predict_post_rl(p1, K_train=K, gamma=gamma)
    pk = float(-np.expm1(K * np.log1p(-p1)))
    v = fp.verdict({1: p1, K: pk}, gamma=gamma)
    assert r["out-pass1"] == pytest.approx(p1, abs=TOL)
    assert r["out-passK"] == pytest.approx(pk, abs=TOL)
    assert r["out-gap"] == pytest.approx(v.gap, abs=TOL)
    assert r["out-lift"] == pytest.approx(v.expected_pass1 - v.pass1, abs=TOL)
    assert r["out-after"] == pytest.approx(pred.value, abs=TOL) == pytest.approx(v.expected_pass1, abs=TOL)
    assert r["band"] == pytest.approx([pred.low, pred.high], abs=TOL)
    assert r["out-lift-pp"] == pytest.approx(v.expected_lift_pp, abs=1e-10)
    assert r["out-cost"] == pytest.approx(v.estimated_cost_usd, rel=1e-12)
    assert r["verdict"] == v.decision
    assert r["out-afterK"] == pytest.approx(-np.expm1(K * np.log1p(-pred.value)), abs=TOL)
    # what is shown is the value, rounded
    shown = f"{pred.value:.3f}" if pred.value >= 0.01 else f"{pred.value:.4f}"
    assert r["text"]["out-after"] == shown


def test_chapter_page_presets_and_sliders_match_python(browser, tmp_path):
    path = write_whatif(tmp_path / "whatif.html")
    browser.open(path)
    r = read(browser)
    assert r["mode"] == "single"
    check_single(r, 0.15, 64, 0.8)
    # the chapter's figure as it opens
    assert [r["text"][k] for k in ("out-pass1", "out-gap", "out-lift", "out-after")] == \
        ["0.150", "0.850", "+0.680", "0.830"]

    browser.press("#gamma", "ArrowLeft", 5)  # keyboard on the slider: gamma 0.80 -> 0.75
    check_single(read(browser), 0.15, 64, 0.75)
    browser.press("#K", "ArrowRight", 3)  # K 64 -> 67
    check_single(read(browser), 0.15, 67, 0.75)
    browser.click("#p1", x=0.3)  # a mouse click on the p1 slider's track
    r = read(browser)
    assert 0.2 < r["p1-label"] < 0.4 and r["p1-label"] != 0.15
    check_single(r, r["p1-label"], 67, 0.75)

    browser.click('[data-preset="Hopeless eval"]')
    r = read(browser)
    check_single(r, 0.001, 256, 0.8)
    assert r["text"]["out-passK"] == "0.226"  # "even at K = 256 the base hits ~22%"
    browser.click('[data-preset="Weak 7B base"]')
    r = read(browser)
    check_single(r, 0.0005, 64, 0.8)
    assert r["verdict"] == "SKIP" and r["out-lift"] < 0.05
    browser.screenshot(tmp_path / "weak7b.png")

    browser.click('[data-preset="Seed simulator"]')
    for gamma, K in ((0.8, 64), (0.79, 64), (0.79, 63)):
        if gamma == 0.79 and K == 64:
            browser.press("#gamma", "ArrowLeft")
        if K == 63:
            browser.press("#K", "ArrowLeft")
        r = read(browser)
        assert r["mode"] == "simulator" and r["K-label"] == K and r["gamma-label"] == pytest.approx(gamma)
        sim = fp.simulate(K_train=K, gamma=gamma, ks=(1, K))
        assert r["out-pass1"] == pytest.approx(sim.before[1], abs=TOL)
        assert r["out-passK"] == pytest.approx(sim.before[K], abs=TOL)
        assert r["out-after"] == pytest.approx(sim.after[1], abs=TOL)
        assert r["out-afterK"] == pytest.approx(sim.after[K], abs=TOL)
        assert r["verdict"] == fp.verdict(sim.before, gamma=gamma).decision
    r = read(browser)
    assert r["fate"] and sum(r["fate"].values()) == pytest.approx(r["out-lift"], abs=TOL)
    shot = browser.screenshot(tmp_path / "whatif.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    assert browser.console_errors() == []


def _run_report(n, c, **kw):
    return ScreenReport.from_counts([f"p{i}" for i in range(len(c))], n, c, config={"model": "tiny </script>"}, **kw)


def check_run(r, n, c, K, gamma):
    """A run's counts: fp.verdict(curve, gamma, K_train=K) (INCONCLUSIVE rule included) and, where
    K <= n, fp.predict_post_rl on the curve; the band summary is fastpass.fate's."""
    curve = fp.pass_at_k_curve(n, c)
    v = fp.verdict(curve, gamma=gamma, K_train=K)
    assert (r["K-label"], r["gamma-label"]) == (K, pytest.approx(gamma, abs=0))
    assert r["out-pass1"] == pytest.approx(v.pass1, abs=TOL)
    assert r["out-passK"] == pytest.approx(v.pass_kmax, abs=TOL)
    assert r["out-gap"] == pytest.approx(v.gap, abs=TOL)
    assert r["out-after"] == pytest.approx(v.expected_pass1, abs=TOL)
    assert r["verdict"] == v.decision and r["rule"] == v.uncertainty["rule_decision"]
    lo, hi = v.uncertainty["lift_interval"]
    if v.uncertainty["reasons"]:
        assert "solved" in r["why"] or f"[{lo:.3f}, {hi:.3f}]" in r["why"]
    else:
        assert f"[{lo:.3f}, {hi:.3f}]" in r["why"]
    if K <= int(np.min(n)):
        assert r["out-after"] == pytest.approx(fp.predict_post_rl(curve, K_train=K, gamma=gamma).value, abs=TOL)
    f = fate_table([str(i) for i in range(len(c))], n, c, K_train=K, gamma=gamma)
    for band, row in f.summary().items():
        if band != "all":
            assert r["fate"][band] == pytest.approx(row["lift"], abs=TOL), band


def test_run_page_follows_fp_verdict_and_predict_post_rl(browser, tmp_path):
    c = [15, 14, 13, 11, 11, 10, 8, 8, 6, 4, 4, 4, 3, 1, 1, 0, 0]
    n = [16] * len(c)
    path = write_whatif(tmp_path / "run.html", _run_report(n, c, ks=[1, 4, 16]))
    browser.open(path)
    r = read(browser)
    assert r["mode"] == "run"
    check_run(r, n, c, 64, 0.7)  # the report's K_train and gamma; K > n: extrapolated (noted on the page)
    assert not browser.eval("document.getElementById('extrapolated-note').hidden")
    browser.press("#K", "ArrowLeft", 48)  # K = 16 = n: the unbiased estimator, no extrapolation
    r = read(browser)
    check_run(r, n, c, 16, 0.7)
    assert browser.eval("document.getElementById('extrapolated-note').hidden")
    browser.press("#gamma", "ArrowRight", 15)
    check_run(read(browser), n, c, 16, 0.85)
    browser.screenshot(tmp_path / "run.png")
    assert browser.console_errors() == []


@pytest.mark.parametrize("case", ["few solved", "interval straddles", "gamma walk", "skip", "many problems"])
def test_run_page_three_way_decisions_equal_fp_verdict(browser, tmp_path, case):
    rng = np.random.default_rng(7)
    if case == "few solved":  # fewer than 10 problems ever solved -> INCONCLUSIVE whatever the lift
        c, n = [9, 5, 3, 2, 1, 1, 0, 0, 0, 0, 0, 0], [16] * 12
    elif case == "interval straddles":  # 11 solved; the lift's interval contains min_lift
        rng = np.random.default_rng(1)
        c, n = list(rng.binomial(64, rng.beta(0.3, 60, 80))), [64] * 80
    elif case == "gamma walk":  # GO at gamma 0.7, INCONCLUSIVE once gamma * gap's low end < min_lift
        c, n = list(rng.binomial(32, rng.beta(0.4, 6, 40))), [32] * 40
    elif case == "skip":
        c, n = [32] * 20 + [31] * 10, [32] * 30
    else:  # too many problems to embed fp's resampling weights: the page resamples by itself
        c, n = list(rng.binomial(16, rng.beta(0.6, 2.2, 700))), [16] * 700
    path = write_whatif(tmp_path / "p.html", _run_report(n, c, ks=[1, int(n[0])]))
    browser.open(path)
    r = read(browser)
    v = fp.verdict(fp.pass_at_k_curve(n, c), gamma=0.7, K_train=64)
    if case == "few solved":
        assert v.decision == "INCONCLUSIVE"
    if case == "skip":
        assert v.decision == "SKIP"
    if case == "interval straddles":
        assert v.decision == "INCONCLUSIVE" and v.uncertainty["solved"] >= 10 and v.uncertainty["rule_decision"] == "GO"
    if case == "many problems":
        assert "resampled by this page" in r["why"]
        assert v.decision == "GO" and r["verdict"] == "GO"  # far from the threshold: the same call
        assert r["out-after"] == pytest.approx(v.expected_pass1, abs=TOL)
        return
    check_run(r, n, c, 64, 0.7)
    if case == "gamma walk":
        # walk gamma down from 0.70 to 0.10, checking every 0.05 against fp.verdict; the call changes
        seen = {r["verdict"]}
        for _ in range(12):
            browser.press("#gamma", "ArrowLeft", 5)
            r = read(browser)
            check_run(r, n, c, 64, round(r["gamma-label"], 2))
            seen.add(r["verdict"])
        assert len(seen) >= 2, seen

